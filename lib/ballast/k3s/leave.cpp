#include "ballast/k3s/leave.hpp"

#include <set>
#include <thread>

#include "ballast/core/json.hpp"
#include "ballast/k3s/readiness.hpp"
#include "ballast/system/http.hpp"

namespace ballast::k3s {

std::vector<std::string> drain_targets(const nlohmann::json& pod_list) {
    std::vector<std::string> out;
    if (!pod_list.is_object() || !pod_list.contains("items") || !pod_list["items"].is_array())
        return out;
    for (const auto& pod : pod_list["items"]) {
        if (!pod.is_object() || !pod.contains("metadata") || !pod["metadata"].is_object()) continue;
        const auto& meta = pod["metadata"];
        const auto phase = pod.contains("status")
                               ? json_field<std::string>(pod["status"], "phase", "")
                               : std::string();
        if (phase == "Succeeded" || phase == "Failed") continue;
        if (meta.contains("annotations") && meta["annotations"].is_object() &&
            meta["annotations"].contains("kubernetes.io/config.mirror"))
            continue;
        bool daemonset = false;
        if (meta.contains("ownerReferences") && meta["ownerReferences"].is_array())
            for (const auto& o : meta["ownerReferences"])
                daemonset = daemonset || json_field<std::string>(o, "kind", "") == "DaemonSet";
        if (daemonset) continue;
        const auto ns = json_field<std::string>(meta, "namespace", "default");
        const auto name = json_field<std::string>(meta, "name", "");
        if (!name.empty()) out.push_back(ns + "/" + name);
    }
    return out;
}

nlohmann::json LeaveReport::to_json() const {
    return {{"node", node},
            {"cordoned", cordoned},
            {"evicted", evicted},
            {"deleted", deleted},
            {"detail", detail}};
}

namespace {

using Clock = std::chrono::steady_clock;

// One API call; its status and body whatever the status (the caller judges), transport
// failures as errors.
struct Api {
    std::string server;
    http::Options opts;
    Result<http::Reply> call(const std::string& method, const std::string& path,
                             const std::string& content_type = "", std::string body = "") const {
        http::Request req;
        req.method = method;
        req.body = std::move(body);
        if (!content_type.empty()) req.headers.push_back("Content-Type: " + content_type);
        req.max_body = 4u << 20;
        return http::request(server + path, opts, req);
    }
};

// An API refusal the node cannot get past by waiting: unavailable, naming the step.
Error refused(const std::string& step, const http::Reply& r) {
    std::string why = r.body.substr(0, 300);
    if (auto j = nlohmann::json::parse(r.body, nullptr, false); j.is_object())
        why = json_field<std::string>(j, "message", why);
    return Error(Errc::unavailable,
                 fmt::format("{}: HTTP {}{}", step, r.status, why.empty() ? "" : ": " + why));
}

Result<std::vector<std::string>> pods_on(const Api& api, const std::string& node) {
    auto r = BALLAST_TRY_CTX(api.call("GET", "/api/v1/pods?fieldSelector=spec.nodeName%3D" + node),
                             "list pods");
    if (r.status != 200) return std::unexpected(refused("list the node's pods", r));
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    if (!j.is_object()) return fail(Errc::parse, "list the node's pods: not a JSON object");
    return drain_targets(j);
}

}  // namespace

Result<LeaveReport> leave(const RootPrefix& root, const NodeState& state,
                          std::chrono::milliseconds deadline) {
    const auto until = Clock::now() + deadline;
    const auto paths = k3s_paths(root);
    LeaveReport rep;
    rep.node = paths.node_name;
    if (rep.node.empty()) return fail(Errc::unavailable, "the node's name is unknown");
    // A server's admin credentials can drain; an agent's kubelet ones may be refused some steps,
    // which is said by name.
    const auto kubeconfig = state.role == Role::server
                                ? paths.admin_kubeconfig
                                : paths.data_dir + "/agent/kubelet.kubeconfig";
    const auto kc = BALLAST_TRY_CTX(load_kubeconfig(root, kubeconfig), "k3s");
    const Api api{kc.server, api_options(kc, std::chrono::seconds(15))};
    const std::string node_path = "/api/v1/nodes/" + rep.node;

    // 1. Cordon: nothing new is scheduled here.
    auto r = BALLAST_TRY_CTX(api.call("PATCH", node_path, "application/merge-patch+json",
                                      R"({"spec":{"unschedulable":true}})"),
                             "cordon {} (the cluster cannot be reached)", rep.node);
    if (r.status == 404) {
        rep.detail = "the Node object is gone already";
        return rep;
    }
    if (r.status != 200) return std::unexpected(refused("cordon " + rep.node, r));
    rep.cordoned = true;

    // 2. Evict, as a drain does: a PodDisruptionBudget that says "not now" (429) is asked again
    // until the deadline.
    auto pending = BALLAST_TRY(pods_on(api, rep.node));
    std::set<std::string> asked;  // evicted, and going (their grace period)
    while (!pending.empty()) {
        std::vector<std::string> blocked;
        for (const auto& p : pending) {
            if (asked.contains(p)) continue;
            const auto ns = p.substr(0, p.find('/')), name = p.substr(p.find('/') + 1);
            const auto body =
                json_text(nlohmann::json{{"apiVersion", "policy/v1"},
                                         {"kind", "Eviction"},
                                         {"metadata", {{"name", name}, {"namespace", ns}}}});
            auto e = BALLAST_TRY_CTX(
                api.call("POST", fmt::format("/api/v1/namespaces/{}/pods/{}/eviction", ns, name),
                         "application/json", body),
                "evict {}", p);
            if (e.status == 200 || e.status == 201) {
                rep.evicted.push_back(p);
                asked.insert(p);
            } else if (e.status == 429) {
                blocked.push_back(p);
            } else if (e.status != 404) {
                return std::unexpected(refused("evict " + p, e));
            }
        }
        // Evicted pods take their grace period to go: wait for the list to empty.
        pending = BALLAST_TRY(pods_on(api, rep.node));
        if (pending.empty()) break;
        if (Clock::now() >= until) {
            std::string names;
            for (const auto& p : pending)
                names += (names.empty() ? "" : ", ") + p;
            return fail(Errc::timeout, "drain {}: still running after {} s: {}{}", rep.node,
                        std::chrono::duration_cast<std::chrono::seconds>(deadline).count(), names,
                        blocked.empty() ? "" : " (a PodDisruptionBudget refuses their eviction)");
        }
        std::this_thread::sleep_for(std::chrono::seconds(1));
    }

    // 3. The Node object goes (and with it an etcd member: k3s's controller removes it).
    r = BALLAST_TRY_CTX(api.call("DELETE", node_path), "delete node {}", rep.node);
    if (r.status != 200 && r.status != 202 && r.status != 404)
        return std::unexpected(refused("delete node " + rep.node, r));
    rep.deleted = true;
    return rep;
}

}  // namespace ballast::k3s
