// Recovery keys handed to the operator's escrow (agent.yaml tpm.recovery_key_command: the key on
// its standard input), and a key made at boot waiting for it. A reset the initramfs finishes
// makes a new recovery key before the network (or the escrow's tools) can be there: it is shown
// on the console and kept in RAM only (/run, root's alone) until ballast-escrow.service has
// handed it on, then wiped.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "ballast/config/agent_settings.hpp"
#include "ballast/core/result.hpp"
#include "ballast/core/root.hpp"

namespace ballast::ops {

// Where the key waits, under the run dir (/run/ballast).
inline constexpr std::string_view kEscrowDir = "escrow", kEscrowFile = "recovery-key";

// Runs tpm.recovery_key_command with `key` on its standard input. Nothing to do when no command
// is set. Errc::failed naming the exit status (never the key).
[[nodiscard]] Status escrow_recovery_key(const config::AgentSettings& s, const std::string& key);

// The initramfs keeps `key` for the escrow: RUN/escrow/recovery-key, mode 0600 in a 0700 folder.
[[nodiscard]] Status keep_for_escrow(const std::filesystem::path& run_dir, const std::string& key);

// Hands the pending key under `root` to the escrow command, then overwrites and removes it;
// false when none is pending. A failed command keeps it (for another try this boot).
[[nodiscard]] Result<bool> escrow_pending(const RootPrefix& root, const config::AgentSettings& s);

}  // namespace ballast::ops
