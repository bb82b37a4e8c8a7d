#include "ballast/k3s/readiness.hpp"

#include <yaml-cpp/yaml.h>

#include "ballast/core/encoding.hpp"
#include "ballast/core/files.hpp"
#include "ballast/core/json.hpp"
#include "ballast/system/http.hpp"

namespace ballast::k3s {
namespace {

std::string trimmed(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r'))
        s.pop_back();
    return s;
}

}  // namespace

Paths k3s_paths(const RootPrefix& root) {
    Paths p;
    if (auto text = read_beneath(root, kConfigPath); text && *text) {
        try {
            auto y = YAML::Load(**text);
            if (y["write-kubeconfig"]) p.admin_kubeconfig = y["write-kubeconfig"].as<std::string>();
            if (y["data-dir"]) p.data_dir = y["data-dir"].as<std::string>();
            if (y["node-name"]) p.node_name = y["node-name"].as<std::string>();
        } catch (const YAML::Exception&) {
            // Ours, so it parses; if an operator broke it, k3s will not be ready either.
        }
    }
    if (p.node_name.empty())
        if (auto h = read_beneath(root, "/etc/hostname"); h && *h) p.node_name = trimmed(**h);
    return p;
}

namespace {

Result<std::string> pem_of(const RootPrefix& root, const YAML::Node& n, const char* data_key,
                           const char* file_key, const std::string& where) {
    if (n[data_key]) {
        auto d = base64_decode(n[data_key].as<std::string>());
        if (!d) return fail(Errc::parse, "{}: {}: not base64", where, data_key);
        return *d;
    }
    if (n[file_key]) {
        const auto path = n[file_key].as<std::string>();
        auto text = BALLAST_TRY(read_beneath(root, path, 1u << 20));
        if (!text) return fail(Errc::not_found, "{}: {}: {} does not exist", where, file_key, path);
        return *text;
    }
    return std::string();
}

YAML::Node named(const YAML::Node& list, const std::string& name, const char* inner) {
    if (!list.IsSequence()) return {};
    for (const auto& e : list)
        if (name.empty() || (e["name"] && e["name"].as<std::string>() == name)) return e[inner];
    return {};
}

}  // namespace

http::Options api_options(const Kubeconfig& kc, std::chrono::milliseconds timeout) {
    http::Options o;
    o.ca_pem = kc.ca_pem;
    o.client_cert_pem = kc.cert_pem;
    o.client_key_pem = kc.key_pem;
    o.connect_timeout = std::max(std::chrono::duration_cast<std::chrono::seconds>(timeout),
                                 std::chrono::seconds(1));
    o.timeout = o.connect_timeout;
    o.max_size = 4u << 20;
    return o;
}

Result<Kubeconfig> load_kubeconfig(const RootPrefix& root, const std::string& path) {
    auto text = BALLAST_TRY(read_beneath(root, path, 4u << 20));
    if (!text) return fail(Errc::not_found, "{} does not exist (yet)", path);
    try {
        auto y = YAML::Load(*text);
        std::string cluster, user;
        if (y["current-context"]) {
            auto ctx = named(y["contexts"], y["current-context"].as<std::string>(), "context");
            if (ctx) {
                if (ctx["cluster"]) cluster = ctx["cluster"].as<std::string>();
                if (ctx["user"]) user = ctx["user"].as<std::string>();
            }
        }
        auto c = named(y["clusters"], cluster, "cluster");
        auto u = named(y["users"], user, "user");
        if (!c || !c["server"]) return fail(Errc::parse, "{}: no cluster server", path);
        Kubeconfig k;
        k.server = c["server"].as<std::string>();
        k.ca_pem = BALLAST_TRY(
            pem_of(root, c, "certificate-authority-data", "certificate-authority", path));
        if (u) {
            k.cert_pem =
                BALLAST_TRY(pem_of(root, u, "client-certificate-data", "client-certificate", path));
            k.key_pem = BALLAST_TRY(pem_of(root, u, "client-key-data", "client-key", path));
        }
        return k;
    } catch (const YAML::Exception& e) {
        return fail(Errc::parse, "{}: {}", path, e.what());
    }
}

Readiness probe(const RootPrefix& root, const NodeState& state, std::chrono::milliseconds timeout) {
    Readiness out;
    const auto paths = k3s_paths(root);
    out.kubeconfig = state.role == Role::server ? paths.admin_kubeconfig
                                                : paths.data_dir + "/agent/kubelet.kubeconfig";
    auto kc = load_kubeconfig(root, out.kubeconfig);
    if (!kc) {
        out.detail = kc.error().what();
        return out;
    }
    const auto o = api_options(*kc, timeout);
    if (auto v = http::get_string(kc->server + "/version", o)) {
        auto j = nlohmann::json::parse(*v, nullptr, false);
        out.version = json_field<std::string>(j, "gitVersion", "");
    }
    if (state.role == Role::server) {
        auto r = http::get_string(kc->server + "/readyz", o);
        if (!r) {
            out.detail = "readyz: " + r.error().what();
            return out;
        }
        out.ready = trimmed(*r) == "ok";
        out.detail = "readyz: " + trimmed(*r);
        return out;
    }
    if (paths.node_name.empty()) {
        out.detail = "the node's name is unknown (no node-name, no /etc/hostname)";
        return out;
    }
    auto r = http::get_string(kc->server + "/api/v1/nodes/" + paths.node_name, o);
    if (!r) {
        out.detail = fmt::format("node {}: {}", paths.node_name, r.error().what());
        return out;
    }
    auto j = nlohmann::json::parse(*r, nullptr, false);
    std::string status = "Unknown", reason;
    const nlohmann::json* conditions = nullptr;
    if (j.is_object() && j.contains("status") && j["status"].is_object() &&
        j["status"].contains("conditions"))
        conditions = &j["status"]["conditions"];
    if (conditions && conditions->is_array())
        for (const auto& c : *conditions)
            if (json_field<std::string>(c, "type", "") == "Ready") {
                status = json_field<std::string>(c, "status", "Unknown");
                reason = json_field<std::string>(c, "reason", "");
            }
    out.ready = status == "True";
    out.detail = fmt::format("node {}: Ready={}{}", paths.node_name, status,
                             reason.empty() ? "" : " (" + reason + ")");
    return out;
}

}  // namespace ballast::k3s

namespace ballast::k3s {

Status publish(const RootPrefix& root, const nlohmann::json& labels,
               const nlohmann::json& annotations, std::chrono::milliseconds timeout) {
    const auto paths = k3s_paths(root);
    if (paths.node_name.empty()) return fail(Errc::unavailable, "the node's name is unknown");
    const auto kubeconfig = paths.data_dir + "/agent/kubelet.kubeconfig";
    auto kc = BALLAST_TRY(load_kubeconfig(root, kubeconfig));
    auto o = api_options(kc, timeout);
    o.method = "PATCH";
    o.content_type = "application/merge-patch+json";
    o.body =
        json_text(nlohmann::json{{"metadata", {{"labels", labels}, {"annotations", annotations}}}});
    BALLAST_TRY_CTX(http::get_string(kc.server + "/api/v1/nodes/" + paths.node_name, o),
                    "label node {}", paths.node_name);
    return {};
}

}  // namespace ballast::k3s
