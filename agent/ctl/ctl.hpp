// agentctl: shared pieces of the sub-commands.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ballast/api/client.hpp"
#include "ballast/config/agent_settings.hpp"
#include "ballast/core/result.hpp"
#include "ballast/install/installer.hpp"
#include "ballast/install/reset.hpp"
#include "ballast/update/bundle.hpp"
#include "ballast/update/uki_build.hpp"

namespace ballast::ctl {

// Exit codes (documented in agentctl(8)).
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitUnreachable = 3;
inline constexpr int kExitDenied = 4;

struct GlobalOptions {
    std::string bus_address;  // --bus-address (else $BALLAST_BUS_ADDRESS, else system bus)
    bool json = false;        // --json
    std::string root = "/";   // --root, for commands that work without the daemon
};

// Prints the error on stderr ("agentctl: ...") and maps it to an exit code.
[[nodiscard]] int report_error(const Error& e);

[[nodiscard]] Result<api::AgentClient> connect_agent(const GlobalOptions& g);

void print_json(const nlohmann::json& j);

// Sub-commands.
[[nodiscard]] int cmd_status(const GlobalOptions& g);
[[nodiscard]] int cmd_version(const GlobalOptions& g);
[[nodiscard]] int cmd_log_level(const GlobalOptions& g, const std::string& level);
[[nodiscard]] int cmd_reload(const GlobalOptions& g);
[[nodiscard]] int cmd_bundle_create(const GlobalOptions& g, const update::CreateOptions& o);
[[nodiscard]] int cmd_bundle_verify(const GlobalOptions& g, const std::string& src,
                                    const std::string& keyring);
[[nodiscard]] int cmd_bundle_export(const GlobalOptions& g, const std::string& src,
                                    const std::string& layout, const std::string& tag);
[[nodiscard]] int cmd_bundle_push(const GlobalOptions& g, const std::string& src,
                                  const std::string& ref, const std::string& auth_file,
                                  const std::string& ca_file);
[[nodiscard]] int cmd_bundle_inspect(const GlobalOptions& g, const std::string& src);
[[nodiscard]] int cmd_uki_build(const GlobalOptions& g, const update::UkiBuildOptions& o);
[[nodiscard]] int cmd_uki_inspect(const GlobalOptions& g, const std::string& path);
// db and dbx: EFI signature list files; empty: this machine's (efivarfs).
[[nodiscard]] int cmd_uki_verify(const GlobalOptions& g, const std::string& path,
                                 const std::string& db, const std::string& dbx);
[[nodiscard]] int cmd_install(const GlobalOptions& g, install::Options o);
// With o.device: that disk, now; else this node, at its next boot (through the daemon).
// reboot: --reboot / --no-reboot (unset: the node's reset: block says).
// graceful, force: the running node's leaving of its k3s cluster (D-Bus Graceful, Force).
[[nodiscard]] int cmd_reset(const GlobalOptions& g, install::ResetOptions o,
                            std::optional<bool> reboot, std::optional<bool> graceful, bool force);
[[nodiscard]] int cmd_config_validate(const GlobalOptions& g, const std::vector<std::string>& files,
                                      bool strict);
[[nodiscard]] int cmd_config_show(const GlobalOptions& g, const std::vector<std::string>& files);
// JSON Schema of cloud-config (or of agent.yaml), generated from the decoders' tables.
[[nodiscard]] int cmd_config_schema(bool agent_settings);
struct UpgradeFlags {
    bool force = false, no_reboot = false, dry_run = false;
};
[[nodiscard]] int cmd_upgrade(const GlobalOptions& g, const std::string& source,
                              const UpgradeFlags& f);
[[nodiscard]] int cmd_health(const GlobalOptions& g, bool no_reboot);
[[nodiscard]] int cmd_rollback(const GlobalOptions& g, bool no_reboot);
[[nodiscard]] int cmd_recovery(const GlobalOptions& g, bool no_reboot);
[[nodiscard]] int cmd_mark(const GlobalOptions& g, bool good, const std::string& slot);
[[nodiscard]] int cmd_k3s_status(const GlobalOptions& g);

// The node's persistent partition, as udev names it.
inline constexpr std::string_view kPersistentDevice = "/dev/disk/by-partlabel/BALLAST_PERSISTENT";
struct EncryptOptions {
    std::string device;           // --device (default kPersistentDevice)
    std::string tpm2_device;      // --tpm2-device (default agent.yaml tpm.device)
    std::string pcrs;             // --pcrs (default agent.yaml tpm.pcrs)
    std::string pcr_bank;         // --pcr-bank (default agent.yaml tpm.pcr_bank)
    bool pin = false;             // --pin: the new token also needs a PIN (NEWPIN or the terminal)
    std::string public_key;       // --tpm2-public-key (default agent.yaml tpm.public_key)
    std::string public_key_pcrs;  // --tpm2-public-key-pcrs (default agent.yaml, "11")
    std::string signature;        // --tpm2-signature (default agent.yaml, systemd's places)
    std::string unlock_key_file;  // recovery key or passphrase instead of the TPM
    int slot = -1;                // wipe-slot N
    bool replace = false;         // recovery-key --replace: drop the other recovery slots
};
// A new recovery key: on stdout once (a JSON document with `print_json_doc` under --json), and
// to agent.yaml's tpm.recovery_key_command when set (its failure is returned, after printing).
[[nodiscard]] Status hand_out_recovery_key(const GlobalOptions& g,
                                           const config::AgentSettings& settings, int keyslot,
                                           const std::string& key, bool print_json_doc);
// verb: status, enroll, reseal, recovery-key, wipe-slot.
[[nodiscard]] int cmd_encrypt(const GlobalOptions& g, const std::string& verb,
                              const EncryptOptions& o);
[[nodiscard]] int cmd_stage_run(const GlobalOptions& g, const std::string& stage,
                                const std::vector<std::string>& files, bool dry_run, bool verbose);

}  // namespace ballast::ctl
