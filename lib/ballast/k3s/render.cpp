#include "ballast/k3s/render.hpp"

#include <algorithm>

#include "ballast/config/diagnostics.hpp"
#include "ballast/core/json.hpp"
#include "ballast/k3s/flags.hpp"

namespace ballast::k3s {
namespace {

// Environment variables k3s reads that have config keys: they go to config.yaml.
constexpr std::pair<const char*, const char*> kEnvKeys[] = {
    {"K3S_URL", "server"},
    {"K3S_TOKEN", "token"},
    {"K3S_TOKEN_FILE", "token-file"},
    {"K3S_NODE_NAME", "node-name"},
    {"K3S_KUBECONFIG_OUTPUT", "write-kubeconfig"},
    {"K3S_KUBECONFIG_MODE", "write-kubeconfig-mode"},
};

struct Input {
    Role role = Role::none;
    std::string where;
    std::vector<std::string> args, defaults;
    std::map<std::string, std::string> env;
    bool replace_args = false, replace_env = false;
};

// Moves `--flag[=value]` arguments that k3s's config file knows into `config`; returns the
// rest (positional words, unknown flags, with their values).
Result<std::vector<std::string>> fold_args(const std::vector<std::string>& args,
                                           nlohmann::ordered_json& config,
                                           const std::string& where) {
    std::vector<std::string> rest;
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a.rfind("--", 0) != 0 && !(a.size() > 1 && a[0] == '-' && a[1] != '-')) {
            rest.push_back(a);
            continue;
        }
        const auto eq = a.find('=');
        std::string name =
            a.substr(a[1] == '-' ? 2 : 1,
                     eq == std::string::npos ? std::string::npos : eq - (a[1] == '-' ? 2 : 1));
        // k3s's short aliases for the two that carry a secret or an address.
        if (name == "t") name = "token";
        if (name == "s") name = "server";
        auto kind = flag_kind(name);
        if (!kind) {
            rest.push_back(a);
            continue;
        }
        std::optional<std::string> value;
        if (eq != std::string::npos)
            value = a.substr(eq + 1);
        else if (*kind != FlagKind::boolean) {
            if (i + 1 >= args.size() || args[i + 1].rfind("--", 0) == 0)
                return fail(Errc::invalid_argument, "{}: {} needs a value", where, a);
            value = args[++i];
        }
        switch (*kind) {
            case FlagKind::boolean:
                if (value && *value != "true" && *value != "false")
                    return fail(Errc::invalid_argument, "{}: {}: expected true or false", where, a);
                config[name] = !value || *value == "true";
                break;
            case FlagKind::list:
                if (!config.contains(name)) config[name] = nlohmann::ordered_json::array();
                // Repeats and duplicates across defaults and user args collapse to one entry.
                if (std::find(config[name].begin(), config[name].end(), *value) ==
                    config[name].end())
                    config[name].push_back(*value);
                break;
            case FlagKind::string:
                config[name] = *value;
                break;
        }
    }
    return rest;
}

std::string where_of(const config::Position& pos, const char* block) {
    return pos.file.empty() ? std::string(block) : fmt::format("{}: {}", to_string(pos), block);
}

Result<Input> select(const config::Config& cfg) {
    Input in;
    if (cfg.k3s.enabled || cfg.k3s_agent.enabled) {
        const bool server = cfg.k3s.enabled;
        const auto& s = server ? cfg.k3s : cfg.k3s_agent;
        in.role = server ? Role::server : Role::agent;
        in.where = where_of(s.pos, server ? "k3s" : "k3s-agent");
        in.args = s.args;
        in.env = s.env;
        in.replace_args = s.replace_args;
        in.replace_env = s.replace_env;
        // Kairos's defaults, dropped with replace_args: the VIP is a name the API server's
        // certificate must carry; the embedded registry is a flag.
        if (server && cfg.kubevip.enabled()) in.defaults.push_back("--tls-san=" + cfg.kubevip.eip);
        if (s.embedded_registry && server) in.defaults.push_back("--embedded-registry");
        return in;
    }
    if (cfg.k3os.present) {
        const auto& k = cfg.k3os;
        in.where = "k3os";
        in.args = k.k3s_args;
        // k3OS: the first k3s_args word picks the role; else a server URL makes an agent.
        if (!in.args.empty() && (in.args.front() == "server" || in.args.front() == "agent")) {
            in.role = in.args.front() == "server" ? Role::server : Role::agent;
            in.args.erase(in.args.begin());
        } else {
            in.role = k.server_url.empty() ? Role::server : Role::agent;
        }
        if (!k.server_url.empty()) in.defaults.push_back("--server=" + k.server_url);
        if (!k.token.empty()) in.defaults.push_back("--token=" + k.token);
        for (const auto& [key, value] : k.labels)
            in.defaults.push_back("--node-label=" + key + "=" + value);
        for (const auto& t : k.taints)
            in.defaults.push_back("--node-taint=" + t);
        in.env = k.environment;
    }
    return in;
}

std::string yaml_scalar(const nlohmann::ordered_json& v);

std::string kube_vip_pod(const config::KubeVipSpec& v) {
    const std::string image =
        "ghcr.io/kube-vip/kube-vip:" + (v.version.empty() ? std::string("v0.6.4") : v.version);
    std::string env;
    auto add = [&](const char* k, const std::string& val) {
        env += fmt::format("        - name: {}\n          value: {}\n", k, yaml_scalar(val));
    };
    add("vip_arp", "true");
    add("port", "6443");
    if (!v.interface_name.empty()) add("vip_interface", v.interface_name);
    add("vip_cidr", v.eip.find(':') == std::string::npos ? "32" : "128");
    add("cp_enable", "true");
    add("cp_namespace", "kube-system");
    add("vip_leaderelection", "true");
    add("vip_leasename", "plndr-cp-lock");
    add("address", v.eip);
    std::string args = "        - manager\n";
    for (const auto& a : v.args)
        args += fmt::format("        - {}\n", yaml_scalar(a));
    return fmt::format(
        R"(# Written by Ballast from the kubevip: block. A static pod: the VIP comes up with the kubelet,
# before the API server it fronts.
apiVersion: v1
kind: Pod
metadata:
  name: kube-vip
  namespace: kube-system
spec:
  hostNetwork: true
  containers:
    - name: kube-vip
      image: {}
      imagePullPolicy: IfNotPresent
      args:
{}      env:
{}      securityContext:
        capabilities:
          add: [NET_ADMIN, NET_RAW]
      volumeMounts:
        - mountPath: /etc/kubernetes/admin.conf
          name: kubeconfig
  hostAliases:
    - hostnames: [kubernetes]
      ip: 127.0.0.1
  volumes:
    - name: kubeconfig
      hostPath:
        path: /etc/rancher/k3s/k3s.yaml
)",
        yaml_scalar(image), args, env);
}

std::string yaml_scalar(const nlohmann::ordered_json& v) {
    if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
    // JSON string syntax is valid YAML and quotes everything that needs it; bytes that are not
    // UTF-8 (a templated DMI string) become U+FFFD rather than an exception.
    return json_text(v);
}

}  // namespace

std::string_view name(Role r) {
    switch (r) {
        case Role::server:
            return "server";
        case Role::agent:
            return "agent";
        default:
            return "none";
    }
}

std::string Rendering::config_yaml() const {
    std::string out = "# Written by Ballast from the node's cloud-config (" + source +
                      "). Edit the cloud-config instead: this file is rewritten at every boot.\n";
    for (const auto& [k, v] : config.items()) {
        if (v.is_array()) {
            out += k + ":\n";
            for (const auto& e : v)
                out += "  - " + yaml_scalar(e) + "\n";
        } else {
            out += k + ": " + yaml_scalar(v) + "\n";
        }
    }
    return out;
}

std::string Rendering::server() const {
    auto it = config.find("server");
    return it != config.end() && it->is_string() ? it->get<std::string>() : "";
}

Result<Rendering> render(const config::Config& cfg) {
    auto in = BALLAST_TRY(select(cfg));
    Rendering r;
    r.role = in.role;
    if (r.role == Role::none) return r;
    r.source = in.where;
    r.unit = r.role == Role::server ? "k3s.service" : "k3s-agent.service";
    r.replace_env = in.replace_env;
    std::vector<std::string> all = in.replace_args ? std::vector<std::string>{} : in.defaults;
    all.insert(all.end(), in.args.begin(), in.args.end());
    // The environment's config keys first, so that an explicit argument wins over them.
    for (const auto& [var, key] : kEnvKeys)
        if (auto it = in.env.find(var); it != in.env.end()) {
            r.config[key] = it->second;
            in.env.erase(it);
        }
    r.args = BALLAST_TRY(fold_args(all, r.config, in.where));
    // A leading role word in the arguments would be a second one: the unit says it.
    if (!r.args.empty() && (r.args.front() == "server" || r.args.front() == "agent"))
        return fail(Errc::invalid_argument,
                    "{}: args start with '{}'; the role comes from the block ({} here)", in.where,
                    r.args.front(), name(r.role));
    for (const auto& a : r.args)
        if (std::any_of(a.begin(), a.end(), [](char c) { return c >= 0 && c < 0x20; }))
            return fail(Errc::invalid_argument,
                        "{}: argument '{}' contains a control character (a line break would end "
                        "the unit's ExecStart=)",
                        in.where, a.substr(0, 40));
    r.env = std::move(in.env);
    if (r.role == Role::agent) {
        if (r.server().empty())
            return fail(Errc::invalid_argument,
                        "{}: a k3s agent needs the server's URL (K3S_URL in env, --server in "
                        "args, or k3os.server_url)",
                        in.where);
        if (!r.config.contains("token") && !r.config.contains("token-file"))
            return fail(Errc::invalid_argument,
                        "{}: a k3s agent needs the cluster token (K3S_TOKEN or K3S_TOKEN_FILE "
                        "in env, --token in args, or k3os.token)",
                        in.where);
    }
    if (r.role == Role::server && !r.server().empty() && !r.config.contains("token") &&
        !r.config.contains("token-file"))
        return fail(Errc::invalid_argument,
                    "{}: a server joining {} needs the cluster token (K3S_TOKEN or --token)",
                    in.where, r.server());
    if (r.role == Role::server && r.config.value("cluster-init", false) && !r.server().empty())
        return fail(Errc::invalid_argument,
                    "{}: --cluster-init starts a new cluster; it cannot be combined with "
                    "joining {}",
                    in.where, r.server());
    if (cfg.kubevip.enabled()) {
        if (r.role != Role::server)
            return fail(Errc::invalid_argument,
                        "kubevip: the VIP runs on servers; this node is "
                        "a k3s agent");
        r.kubevip_manifest = kube_vip_pod(cfg.kubevip);
    }
    return r;
}

std::string unit_file(const Rendering& r, const std::string& binary) {
    const bool server = r.role == Role::server;
    std::string exec = binary + " " + std::string(name(r.role));
    for (const auto& a : r.args) {
        // systemd's own quoting: double quotes, with \ and " escaped; % doubled.
        std::string q;
        for (char c : a) {
            if (c == '"' || c == '\\') q += '\\';
            if (c == '%' || c == '$') q += c;  // %% and $$: no specifier, no expansion
            q += c;
        }
        exec += " \\\n    \"" + q + "\"";
    }
    return fmt::format(R"([Unit]
Description=Lightweight Kubernetes
Documentation=https://k3s.io
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
# As the upstream installer (get.k3s.io) writes it; written by Ballast.
Type={}
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-/etc/systemd/system/{}.env
KillMode=process
Delegate=yes
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart={}
)",
                       server ? "notify" : "exec", r.unit, exec);
}

std::string env_file(const Rendering& r, const std::string& existing) {
    std::map<std::string, std::string> vars;
    if (!r.replace_env) {
        size_t pos = 0;
        while (pos < existing.size()) {
            auto nl = existing.find('\n', pos);
            std::string line = existing.substr(pos, nl == std::string::npos ? nl : nl - pos);
            pos = nl == std::string::npos ? existing.size() : nl + 1;
            auto eq = line.find('=');
            if (line.empty() || line[0] == '#' || eq == std::string::npos) continue;
            std::string v = line.substr(eq + 1);
            if (v.size() >= 2 && v.front() == '"' && v.back() == '"') {
                std::string u;
                for (size_t i = 1; i + 1 < v.size(); ++i) {
                    if (v[i] == '\\' && i + 2 < v.size()) ++i;
                    u += v[i];
                }
                v = u;
            }
            vars[line.substr(0, eq)] = v;
        }
    }
    for (const auto& [k, v] : r.env)
        vars[k] = v;
    std::string out;
    for (const auto& [k, v] : vars) {
        std::string q;
        for (char c : v) {
            if (c == '"' || c == '\\') q += '\\';
            q += c;
        }
        out += k + "=\"" + q + "\"\n";
    }
    return out;
}

}  // namespace ballast::k3s
