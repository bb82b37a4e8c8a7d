#include "ballast/k3s/flags.hpp"

#include <algorithm>
#include <array>

namespace ballast::k3s {
namespace {

// From `k3s server --help` and `k3s agent --help` (v1.27/v1.28). StringSlice flags are lists
// (repeatable on the command line, YAML lists in the config file).
constexpr std::array kLists = {
    "disable",
    "etcd-arg",
    "kube-apiserver-arg",
    "kube-cloud-controller-manager-arg",
    "kube-controller-manager-arg",
    "kube-proxy-arg",
    "kube-scheduler-arg",
    "kubelet-arg",
    "node-external-ip",
    "node-ip",
    "node-label",
    "node-taint",
    "tls-san",
    "cluster-cidr",
    "service-cidr",
    "cluster-dns",
    "etcd-s3-endpoint-ca",
    "egress-selector-mode-arg",
    "image-credential-provider-arg",
};

constexpr std::array kBooleans = {
    "cluster-init",
    "cluster-reset",
    "disable-agent",
    "disable-apiserver",
    "disable-cloud-controller",
    "disable-controller-manager",
    "disable-etcd",
    "disable-helm-controller",
    "disable-kube-proxy",
    "disable-network-policy",
    "disable-scheduler",
    "docker",
    "embedded-registry",
    "etcd-disable-snapshots",
    "etcd-expose-metrics",
    "etcd-s3",
    "etcd-s3-insecure",
    "etcd-snapshot-compress",
    "flannel-external-ip",
    "flannel-ipv6-masq",
    "prefer-bundled-bin",
    "protect-kernel-defaults",
    "rootless",
    "secrets-encryption",
    "selinux",
    "supervisor-metrics",
    "vpn-auth-file-only",
    "with-node-id",
    "enable-pprof",
    "debug",
};

constexpr std::array kStrings = {
    "advertise-address",
    "advertise-port",
    "agent-token",
    "agent-token-file",
    "airgap-extra-registry",
    "bind-address",
    "cluster-domain",
    "container-runtime-endpoint",
    "data-dir",
    "datastore-cafile",
    "datastore-certfile",
    "datastore-endpoint",
    "datastore-keyfile",
    "default-local-storage-path",
    "default-runtime",
    "etcd-s3-access-key",
    "etcd-s3-bucket",
    "etcd-s3-folder",
    "etcd-s3-region",
    "etcd-s3-secret-key",
    "etcd-snapshot-dir",
    "etcd-snapshot-name",
    "etcd-snapshot-retention",
    "etcd-snapshot-schedule-cron",
    "flannel-backend",
    "flannel-conf",
    "flannel-iface",
    "https-listen-port",
    "image-credential-provider-bin-dir",
    "image-credential-provider-config",
    "lb-server-port",
    "log",
    "node-name",
    "pause-image",
    "private-registry",
    "resolv-conf",
    "server",
    "service-node-port-range",
    "snapshotter",
    "system-default-registry",
    "tls-cipher-suites",
    "token",
    "token-file",
    "v",
    "vpn-auth",
    "write-kubeconfig",
    "write-kubeconfig-group",
    "write-kubeconfig-mode",
};

template <size_t N>
bool in(const std::array<const char*, N>& a, std::string_view n) {
    return std::any_of(a.begin(), a.end(), [&](const char* s) { return n == s; });
}

}  // namespace

std::optional<FlagKind> flag_kind(std::string_view name) {
    if (in(kLists, name)) return FlagKind::list;
    if (in(kBooleans, name)) return FlagKind::boolean;
    if (in(kStrings, name)) return FlagKind::string;
    return std::nullopt;
}

}  // namespace ballast::k3s
