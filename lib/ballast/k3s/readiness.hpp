// Is k3s up on this node? Asked the way Kubernetes clients ask, with the node's own credentials
// from the kubeconfig k3s wrote: a server's API `/readyz`; for an agent, its Node object's Ready
// condition through the API (the agent's kubelet credentials, via its local load balancer).
#pragma once

#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

#include "ballast/core/result.hpp"
#include "ballast/core/root.hpp"
#include "ballast/k3s/state.hpp"
#include "ballast/system/http.hpp"

namespace ballast::k3s {

// Node paths k3s uses, honouring data-dir, write-kubeconfig and node-name from its config.
struct Paths {
    std::string admin_kubeconfig = "/etc/rancher/k3s/k3s.yaml";
    std::string data_dir = "/var/lib/rancher/k3s";
    std::string node_name;  // else /etc/hostname
};
[[nodiscard]] Paths k3s_paths(const RootPrefix& root);

struct Kubeconfig {
    std::string server;  // https://127.0.0.1:6443
    std::string ca_pem, cert_pem, key_pem;
};

// The current context's cluster and user (the first ones when there is no current-context);
// file references are read under `root`.
[[nodiscard]] Result<Kubeconfig> load_kubeconfig(const RootPrefix& root, const std::string& path);

// Requests to the API server with the kubeconfig's credentials, each bounded by `timeout`.
[[nodiscard]] http::Options api_options(const Kubeconfig& kc, std::chrono::milliseconds timeout);

struct Readiness {
    bool ready = false;
    std::string detail;   // "readyz: ok", "node edge-1: Ready=False (KubeletNotReady: ...)"
    std::string version;  // the API server's gitVersion, when it answered
    std::string kubeconfig;
};

// Never an error for "not ready": unreachable, refused or unready all come back as
// ready=false with the reason; errors are for what no waiting can fix (no kubeconfig path).
[[nodiscard]] Readiness probe(const RootPrefix& root, const NodeState& state,
                              std::chrono::milliseconds timeout);

// Merges `labels` and `annotations` into this node's Node object (a JSON merge patch), with the
// kubelet's credentials: the fleet sees each node's slot, version and last upgrade with kubectl.
[[nodiscard]] Status publish(const RootPrefix& root, const nlohmann::json& labels,
                             const nlohmann::json& annotations, std::chrono::milliseconds timeout);

}  // namespace ballast::k3s
