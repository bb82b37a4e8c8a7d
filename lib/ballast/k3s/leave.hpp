// A k3s node leaving its cluster before a factory reset, as `kubectl drain` and `kubectl delete
// node` do it, through the API with the node's own kubeconfig (a server's admin one, an agent's
// kubelet one): cordon, evict what a drain evicts, wait for it to go, delete the Node object. A
// server that is an etcd member leaves etcd too: k3s's etcd member controller removes the member
// of a deleted Node (k3s-io/k3s#4001, #6816).
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ballast/core/result.hpp"
#include "ballast/core/root.hpp"
#include "ballast/k3s/state.hpp"

namespace ballast::k3s {

// The pods of a pod list (`GET /api/v1/pods?fieldSelector=spec.nodeName=NODE`) a drain evicts,
// as "namespace/name": not those a DaemonSet owns (they would come back, and go with the node),
// not mirror pods (the kubelet's static pods), not finished ones.
[[nodiscard]] std::vector<std::string> drain_targets(const nlohmann::json& pod_list);

struct LeaveReport {
    std::string node;
    bool cordoned = false, deleted = false;
    std::vector<std::string> evicted;  // namespace/name
    std::string detail;                // what went wrong, when it did
    [[nodiscard]] nlohmann::json to_json() const;
};

// Errc::unavailable when the API cannot be reached or the node's credentials cannot do a step
// (the caller may go on with --force); Errc::timeout when pods are still there at `deadline`.
[[nodiscard]] Result<LeaveReport> leave(const RootPrefix& root, const NodeState& state,
                                        std::chrono::milliseconds deadline);

}  // namespace ballast::k3s
