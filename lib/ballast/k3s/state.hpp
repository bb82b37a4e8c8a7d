// What the k3s step last set up on this node (/var/lib/ballast/k3s.json): read by the health
// check (is k3s part of this node's readiness?) and by `agentctl k3s status`.
#pragma once

#include <optional>
#include <string>

#include "ballast/core/result.hpp"
#include "ballast/core/root.hpp"
#include "ballast/k3s/render.hpp"

namespace ballast::k3s {

inline constexpr std::string_view kStatePath = "/var/lib/ballast/k3s.json";
inline constexpr std::string_view kConfigPath = "/etc/rancher/k3s/config.yaml";
// A static pod: the kubelet starts it before the API server is reachable through the VIP.
inline constexpr std::string_view kKubeVipManifest =
    "/var/lib/rancher/k3s/agent/pod-manifests/kube-vip.yaml";

struct NodeState {
    Role role = Role::none;
    std::string unit, server, source, binary;
};

[[nodiscard]] Status save_state(const RootPrefix& root, const NodeState& s);
// nullopt when k3s was never set up here.
[[nodiscard]] Result<std::optional<NodeState>> load_state(const RootPrefix& root);

}  // namespace ballast::k3s
