// What k3s should run with on this node, from the cloud-config's Kairos `k3s:`/`k3s-agent:`/
// `kubevip:` blocks or k3OS's `k3os:` keys. Pure: the same config always renders the same bytes,
// so "changed" is a byte comparison with what is on disk (k3s/apply.hpp writes and restarts).
//
// Arguments become keys of k3s's own config file (/etc/rancher/k3s/config.yaml) where k3s has
// such a key (k3s/flags.hpp) and stay on the command line otherwise; K3S_URL, K3S_TOKEN,
// K3S_TOKEN_FILE, K3S_NODE_NAME and K3S_KUBECONFIG_OUTPUT/_MODE become their config keys; the
// rest of the environment goes to the unit's environment file, as the upstream installer does.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ballast/config/model.hpp"
#include "ballast/core/result.hpp"

namespace ballast::k3s {

enum class Role { none, server, agent };
[[nodiscard]] std::string_view name(Role r);

struct Rendering {
    Role role = Role::none;
    std::string unit;    // "k3s.service" or "k3s-agent.service"
    std::string source;  // the block it came from, as "file:line" where known
    nlohmann::ordered_json config = nlohmann::ordered_json::object();  // k3s config keys
    std::vector<std::string> args;                                     // left on the command line
    std::map<std::string, std::string> env;       // the unit's environment file
    bool replace_env = false;                     // else merged into the existing file
    std::optional<std::string> kubevip_manifest;  // static pod, when kubevip: is enabled
    // What k3s's config.yaml holds, as written (comment header, keys in a stable order).
    [[nodiscard]] std::string config_yaml() const;
    [[nodiscard]] std::string server() const;  // "" when none
};

// Role::none when no block enables k3s. Errors name the block (file:line): an agent without a
// server URL or a token, a joining node's token missing, kubevip without an address.
[[nodiscard]] Result<Rendering> render(const config::Config& cfg);

// The systemd unit the upstream installer (get.k3s.io) writes for `role`, running `binary`.
[[nodiscard]] std::string unit_file(const Rendering& r, const std::string& binary);

// The environment file's text: `existing` keys kept unless replace_env, ours win; sorted.
[[nodiscard]] std::string env_file(const Rendering& r, const std::string& existing);

}  // namespace ballast::k3s
