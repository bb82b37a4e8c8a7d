// ballast-agent's one-shot modes: a stage, an upgrade, a boot assessment, each in this process
// with its report on stdout. Early boot units run them directly; the daemon runs its jobs as
// these modes in a child process (jobs.hpp). Exit: 0 success, 1 failure, 2 usage.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "node.hpp"

namespace ballast::agent {

inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

int run_stage_mode(const NodeOptions& node, const std::string& stage,
                   const std::vector<std::string>& configs, bool dry_run, bool json);

// With `json`, progress goes to stdout as one JSON line per step ({"progress": {...}}) before
// the report; otherwise to stderr.
int run_upgrade_mode(const NodeOptions& node, const update::UpgradeRequest& req, bool json);

// Runs the health checks and records the verdict for a slot on trial (commit, or mark bad).
int run_health_mode(const NodeOptions& node, bool json);

struct UnlockRequest {
    std::string device;       // LUKS2 partition (or image file)
    std::string name;         // /dev/mapper name; empty: check the key only, map nothing
    std::string tpm2_device;  // TCTI; empty: agent.yaml tpm.device, else /dev/tpmrm0
};
// Opens an encrypted partition: TPM2 tokens first, then the recovery key (asked on the console).
int run_unlock_mode(const NodeOptions& node, const UnlockRequest& req, bool json);
// The same, for other modes: the method that opened it ("tpm2", "recovery-key").
[[nodiscard]] Result<std::string> unlock_device(const config::AgentSettings& settings,
                                                const UnlockRequest& req);

struct MountRequest {
    std::string sysroot = "/sysroot";  // the slot, mounted read-only by the initramfs
    std::string run_dir = "/run/ballast";
    std::string device;  // persistent partition; empty: agent.yaml mount.device
    bool stages = true;  // run the rootfs and initramfs stages around the assembly
    bool dry_run = false;
};
// Assembles the immutable root on SYSROOT (mount/layout.hpp): unlocks the persistent partition
// when it is LUKS2, mounts it, the /etc and /var overlays, /tmp and the persistent paths; runs
// the rootfs stage before and the initramfs stage after. The report goes to RUN/mount.json.
int run_mount_mode(const NodeOptions& node, const MountRequest& req, bool json);

// Logs the failure, prints {"ok":false,"error":...} (+ extra) with `json`; the exit code.
int report_failure(const char* what, const Error& e, bool json, nlohmann::json extra = {});

}  // namespace ballast::agent
