// The agent's own settings (/etc/ballast/agent.yaml). Optional: defaults are compiled in.
// Unknown keys are errors (unlike cloud-config, where they warn): a misspelt safety setting must
// not be silently ignored on a node nobody visits.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "ballast/core/result.hpp"
#include "ballast/crypt/settings.hpp"
#include "ballast/health/settings.hpp"
#include "ballast/mount/layout.hpp"

namespace ballast::config {

struct BlockInfo;  // config/fields.hpp

inline constexpr std::string_view kDefaultAgentSettingsPath = "/etc/ballast/agent.yaml";

struct AgentSettings {
    std::string log_level = "info";  // trace|debug|info|warning|error|critical|off
    std::string disk;                // disk holding the Ballast partitions; empty: by PARTLABEL
    struct Reconcile {
        std::chrono::milliseconds interval{std::chrono::minutes(60)};  // 0: never
        std::chrono::milliseconds delay{std::chrono::minutes(5)};      // first run after start
    } reconcile;
    struct Http {
        std::string ca_file;  // PEM bundle to trust instead of the system's
        std::string proxy;    // empty: the environment's https_proxy / no_proxy
    } http;
    struct Update {
        // What bundles must say to be accepted; empty: /usr/lib/ballast/compatible of the image.
        std::string compatible;
        std::string keyring;  // empty: /etc/ballast/keyring.pem, else the image's
        // Credentials for oci:// sources (containers-auth.json format); empty: none.
        std::string registry_auth;
        uint32_t tries = 3;  // boots a new slot gets to come up healthy (1..9)
    } update;
    health::Settings health;  // boot assessment
    struct K3s {
        // The k3s binary when the image ships none: fetched to /usr/local/bin/k3s (persistent).
        std::string binary_url, binary_sha256;
        // How long one readiness probe may take (the health deadline bounds them all).
        std::chrono::milliseconds readiness_deadline{std::chrono::seconds(10)};
    } k3s;
    crypt::TpmSettings tpm;  // TPM2 sealing of the encrypted partitions' keys
    mount::Settings mount;   // the immutable root the initramfs assembles
};

// Parses settings text. Every problem is reported, one "file:line:col: message" per line.
[[nodiscard]] Result<AgentSettings> parse_agent_settings(std::string_view text,
                                                         std::string_view file_name);

// Every block agent.yaml may hold, the top level first (for the schema).
[[nodiscard]] std::vector<BlockInfo> agent_settings_blocks();

// Loads a settings file. A missing file yields the defaults when `must_exist` is false.
[[nodiscard]] Result<AgentSettings> load_agent_settings(const std::filesystem::path& path,
                                                        bool must_exist);

}  // namespace ballast::config
