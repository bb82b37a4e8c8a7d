// The typed cloud-config model: one shape for yip/Kairos stages, cloud-init keys, Kairos blocks
// and k3OS files (docs/cloud-config.md has the mapping). Every item keeps its source position.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ballast/config/diagnostics.hpp"
#include "ballast/config/tree.hpp"
#include "ballast/core/text.hpp"

namespace ballast::config {

// A user or group given by name or number.
struct OwnerRef {
    std::string name;            // empty when given by number
    std::optional<uint32_t> id;  // set when given by number
    [[nodiscard]] bool set() const { return id.has_value() || !name.empty(); }
};

struct FileSpec {
    Position pos;
    std::string path;
    std::string content;  // decoded and template-rendered
    std::optional<uint32_t> mode;
    OwnerRef owner, group;
    bool append = false;  // Ballast extension: append instead of replace
};

struct DirectorySpec {
    Position pos;
    std::string path;
    std::optional<uint32_t> mode;
    OwnerRef owner, group;
};

struct DownloadSpec {
    Position pos;
    std::string path, url;
    std::string sha256;  // hex; when set the file is verified and kept while it matches
    std::optional<uint32_t> mode;
    OwnerRef owner, group;
    std::chrono::seconds timeout{0};
};

struct UserSpec {
    Position pos;
    std::string name;
    std::optional<std::string> passwd;  // clear text or crypt(3) hash ("$...")
    bool lock_passwd = false;
    std::optional<std::string> gecos, homedir, shell, primary_group, uid;
    std::vector<std::string> groups;
    std::vector<std::string> ssh_authorized_keys;
    bool no_create_home = false;
    bool system = false;
};

// An ssh_authorized_keys entry fetched once the network is up: github:USER, gitlab:USER or an
// https:// URL. Not plain http://: anyone on the path could add a login key. Anything else is
// the key itself.
[[nodiscard]] inline bool is_remote_key(std::string_view k) noexcept {
    return k.starts_with("github:") || k.starts_with("gitlab:") || is_https_url(k);
}

struct UnitOverride {
    std::string service, name, content;
};

struct SystemctlSpec {
    std::vector<std::string> enable, disable, mask, start;
    std::vector<UnitOverride> overrides;
    [[nodiscard]] bool empty() const {
        return enable.empty() && disable.empty() && mask.empty() && start.empty() &&
               overrides.empty();
    }
};

struct DnsSpec {
    std::vector<std::string> nameservers, search, options;
    std::string path = "/etc/resolv.conf";
};

struct EntitySpec {
    Position pos;
    std::string path;  // database file; empty: the kind's default
    Node entity;       // parsed entity document
};

struct DatasourceSpec {
    // "nocloud" (cidata volume), "config_url", the clouds of datasource/providers
    std::vector<std::string> providers;
    std::string path = "/run/ballast/config.d";
    std::string config_url;
    // Ballast extension: how long a cloud the firmware names may take to answer (its network
    // may still be coming up).
    std::chrono::milliseconds timeout{std::chrono::seconds(30)};
    [[nodiscard]] bool empty() const { return providers.empty(); }
};

struct IfFiles {
    std::vector<std::string> any, all, none;
};

// A command: shell text run with `sh -c`, or (cloud-init runcmd lists) an argument vector run
// without a shell. `text` is what messages show in both cases.
struct CommandSpec {
    std::string text;
    std::vector<std::string> argv;
};

struct Step {
    Position pos;
    std::string stage;  // "boot", "boot.before", ...
    std::string id;     // "<file>.<name or index>", as yip names steps
    std::string name;
    // Conditions.
    std::string if_cmd, node, only_os, only_os_version, only_arch, only_service_manager;
    IfFiles if_files;
    std::vector<std::string> after;
    bool strict = false;
    // Modules, in yip's order.
    DnsSpec dns;
    std::vector<DownloadSpec> downloads;
    std::vector<EntitySpec> ensure_entities;
    std::vector<DirectorySpec> directories;
    std::vector<FileSpec> files;
    std::vector<CommandSpec> commands;
    std::map<std::string, std::string> command_env;  // Ballast extension: `env`
    std::chrono::seconds command_timeout{0};         // Ballast extension: `timeout`
    std::vector<EntitySpec> delete_entities;
    std::string hostname;
    std::map<std::string, std::string> sysctl;
    std::vector<UserSpec> users;
    std::map<std::string, std::vector<std::string>> authorized_keys;  // user -> keys
    std::vector<std::string> modules;
    std::map<std::string, std::string> timesyncd;
    SystemctlSpec systemctl;
    std::map<std::string, std::string> environment;
    std::string environment_file = "/etc/environment";
    std::map<std::string, std::string> systemd_firstboot;
    DatasourceSpec datasource;
    bool has_layout = false;  // validated here, acted on by install
};

// Kairos `install:` block (validated; acted on by install).
struct InstallSpec {
    std::string device;
    std::string source;  // the bundle to install (Kairos' key; a path, file: or dir: allowed)
    bool auto_install = false, reboot = false, poweroff = false, no_format = false, force = false;
    std::vector<std::string> encrypted_partitions;
    std::map<std::string, uint32_t> partition_sizes_mib;  // oem, persistent, slot, efi
};

// Kairos `reset:` block: what a factory reset does when the command (or D-Bus call) does not
// say (install/reset.hpp). Kairos' defaults; Ballast reboots unless told not to, since the
// running node's reset happens at its next boot.
struct ResetSpec {
    bool persistent = true, oem = false, poweroff = false;
    std::optional<bool> reboot;
    Position pos;  // of the block, for errors about it
};

// Kairos `k3s:` / `k3s-agent:` block.
struct K3sSpec {
    bool present = false, enabled = false;
    std::vector<std::string> args;
    std::map<std::string, std::string> env;
    bool replace_args = false, replace_env = false, embedded_registry = false;
    Position pos;
};

struct KubeVipSpec {
    bool present = false;
    std::optional<bool> enable;
    std::string eip, interface_name, version, manifest_url;
    bool static_pod = false;
    std::vector<std::string> args;
    [[nodiscard]] bool enabled() const { return enable ? *enable : !eip.empty(); }
};

struct P2PSpec {
    bool present = false;
    std::string network_token, network_id, role;
};

// k3OS's k3s settings (`k3os.server_url`, ...): the rest of the k3os block becomes steps.
struct K3osK3sSpec {
    bool present = false;
    std::string server_url, token;
    std::map<std::string, std::string> labels;
    std::vector<std::string> taints, k3s_args;
    std::map<std::string, std::string> environment;
};

// cloud-init network config (`network:`, version 1 or 2) of one file, as a netplan document:
// version 2 is the file itself with every line outside its `network:` block blanked, so that
// netplan's own errors name the user's file:line:col; version 1 is converted to version 2.
struct NetworkDoc {
    Position pos;            // the `network:` key
    std::string netplan;     // the document netplan reads; empty when `disabled`
    bool converted = false;  // from version 1: netplan's lines are not the file's
    bool disabled = false;   // `network: {config: disabled}`: Ballast renders nothing
};

struct Config {
    std::map<std::string, std::vector<Step>> stages;
    std::vector<NetworkDoc> network;  // in file order
    // A file holding a `network:` block was not applied (it has errors): the network config in
    // place is kept as it is, rather than dropped.
    bool network_kept = false;
    InstallSpec install;
    ResetSpec reset;
    K3sSpec k3s, k3s_agent;
    KubeVipSpec kubevip;
    P2PSpec p2p;
    K3osK3sSpec k3os;
    std::string config_url;
    bool strict = false;  // Kairos: fail the stage on any step error
};

}  // namespace ballast::config
