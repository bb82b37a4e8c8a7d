// k3s status: what the k3s step set up and whether k3s answers, read on the node (no daemon).
#include <cstdio>

#include "ballast/core/files.hpp"
#include "ballast/k3s/readiness.hpp"
#include "ctl.hpp"

namespace ballast::ctl {
namespace {

// config.yaml without its secrets: status output ends up in tickets and chat.
std::string redacted(const std::string& yaml) {
    std::string out;
    size_t pos = 0;
    while (pos < yaml.size()) {
        auto nl = yaml.find('\n', pos);
        std::string line = yaml.substr(pos, nl == std::string::npos ? nl : nl - pos);
        pos = nl == std::string::npos ? yaml.size() : nl + 1;
        for (const char* key :
             {"token:", "agent-token:", "datastore-endpoint:", "vpn-auth:", "etcd-s3-secret-key:"})
            if (line.rfind(key, 0) == 0) line = std::string(key) + " <redacted>";
        out += line + "\n";
    }
    return out;
}

}  // namespace

int cmd_k3s_status(const GlobalOptions& g) {
    RootPrefix root(std::filesystem::absolute(g.root));
    auto state = k3s::load_state(root);
    if (!state) return report_error(state.error());
    if (!*state) {
        if (g.json)
            print_json({{"role", "none"}});
        else
            std::printf("k3s is not set up on this node (no k3s:, k3s-agent: or k3os: block)\n");
        return kExitOk;
    }
    const auto& s = **state;
    auto ready = k3s::probe(root, s, std::chrono::seconds(5));
    auto cfg = read_beneath(root, k3s::kConfigPath);
    const std::string config_text = cfg && *cfg ? redacted(**cfg) : "";
    if (g.json) {
        print_json({{"role", k3s::name(s.role)},
                    {"unit", s.unit},
                    {"server", s.server},
                    {"source", s.source},
                    {"binary", s.binary},
                    {"kubeconfig", ready.kubeconfig},
                    {"version", ready.version},
                    {"ready", ready.ready},
                    {"detail", ready.detail},
                    {"config", config_text}});
        return kExitOk;
    }
    std::printf("k3s %s (%s), from %s\n", std::string(k3s::name(s.role)).c_str(), s.unit.c_str(),
                s.source.c_str());
    std::printf("  Server:     %s\n", s.server.empty() ? "-" : s.server.c_str());
    std::printf("  Binary:     %s\n", s.binary.c_str());
    std::printf("  Version:    %s\n", ready.version.empty() ? "-" : ready.version.c_str());
    std::printf("  Ready:      %s (%s)\n", ready.ready ? "yes" : "no", ready.detail.c_str());
    std::printf("  Config (%s):\n", std::string(k3s::kConfigPath).c_str());
    size_t pos = 0;
    while (pos < config_text.size()) {
        auto nl = config_text.find('\n', pos);
        std::printf("    %s\n", config_text.substr(pos, nl - pos).c_str());
        pos = nl == std::string::npos ? config_text.size() : nl + 1;
    }
    return kExitOk;
}

}  // namespace ballast::ctl
