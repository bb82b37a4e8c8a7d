// ballast-agent: the daemon (no sub-command), plus the one-shot modes (oneshot.hpp) that early
// boot units and the daemon's jobs run. Exit codes: 0 success, 1 failure, 2 usage error,
// 70 internal error (a bug).
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include <optional>
#include <string>

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "ballast/config/agent_settings.hpp"
#include "ballast/core/log.hpp"
#include "ballast/system/sdbus.hpp"
#include "ballast_config.h"
#include "daemon.hpp"
#include "jobs.hpp"
#include "oneshot.hpp"

namespace {

using namespace ballast;

// Everything the command line can say, filled in by CLI11.
struct CommandLine {
    std::string root = "/", disk, config_file, bus_address, booted_slot, log_level;
    bool dry_run = false, json = false;
    CLI::App* stage = nullptr;
    agent::StageMode stage_mode;
    int wait_k3s_ready = 0;
    CLI::App* upgrade = nullptr;
    ops::UpgradeRequest upgrade_req;
    std::string expect;
    bool no_reboot = false;
    CLI::App* health = nullptr;
    CLI::App* leave = nullptr;
    CLI::App* escrow = nullptr;
    int leave_timeout = 300;
    CLI::App* unlock = nullptr;
    ops::UnlockRequest unlock_req;
    CLI::App* mount = nullptr;
    ops::MountRequest mount_req;
    bool no_stages = false;
};

void add_global_options(CLI::App& app, CommandLine& c) {
    app.set_version_flag("--version", BALLAST_VERSION);
    app.add_option("--root", c.root, "Act on the node rooted at DIR (an image or a test folder)")
        ->option_text("DIR")
        ->check(CLI::ExistingDirectory);
    app.add_option("--disk", c.disk,
                   "Disk holding the Ballast partitions: block device or image file")
        ->option_text("PATH");
    app.add_option("--config", c.config_file, "Agent settings (default /etc/ballast/agent.yaml)")
        ->option_text("FILE");
    app.add_option("--bus-address", c.bus_address,
                   "D-Bus address to serve on instead of the system bus (env BALLAST_BUS_ADDRESS)")
        ->option_text("ADDR");
    app.add_option("--booted-slot", c.booted_slot,
                   "Act as if booted from this slot (default: ballast.slot= on /proc/cmdline)")
        ->option_text("A|B")
        ->check(CLI::IsMember({"A", "B", "a", "b"}));
    app.add_option("--log-level", c.log_level,
                   "trace, debug, info, warning, error, critical or off (overrides agent.yaml)")
        ->option_text("LEVEL");
}

void add_stage_command(CLI::App& app, CommandLine& c) {
    c.stage = app.add_subcommand(
        "stage", "Run one cloud-config stage now, without D-Bus (initramfs, early units)");
    c.stage
        ->add_option("NAME", c.stage_mode.stage,
                     "Stage: rootfs, initramfs, fs, boot, network, k3s-ready, reconcile, or a "
                     "custom name")
        ->required();
    c.stage
        ->add_option("--config", c.stage_mode.configs,
                     "Extra cloud-config file, after the node's sources (repeatable)")
        ->option_text("FILE");
    c.stage->add_flag("--dry-run", c.dry_run, "Print the plan; change nothing");
    c.stage->add_flag(
        "--access-only", c.stage_mode.access_only,
        "Recovery boots: of every boot stage, only the host name, users and SSH keys");
    c.stage
        ->add_option("--wait-k3s-ready", c.wait_k3s_ready,
                     "Run once k3s reports ready, waiting up to SECONDS; not at all where k3s is "
                     "not set up")
        ->option_text("SECONDS")
        ->check(CLI::Range(1, 86400));
    c.stage->add_flag("--json", c.json, "Print the report as JSON");
}

void add_upgrade_command(CLI::App& app, CommandLine& c) {
    c.upgrade = app.add_subcommand(
        "upgrade", "Write a bundle into the other slot and activate it (the daemon's upgrade job)");
    c.upgrade->add_option("SOURCE", c.upgrade_req.source, "Bundle folder, .tar or https:// URL")
        ->required();
    c.upgrade->add_flag("--force", c.upgrade_req.force, "Accept a version that failed here before");
    c.upgrade->add_flag("--no-reboot", c.no_reboot,
                        "Recorded in the journal: the daemon does not reboot when staged");
    c.upgrade
        ->add_option("--expect-manifest", c.expect,
                     "Resuming: the bundle's manifest must have this SHA-256")
        ->option_text("SHA256");
    c.upgrade->add_flag("--dry-run", c.upgrade_req.dry_run,
                        "Check the bundle and plan the download; write nothing");
    c.upgrade->add_flag("--json", c.json, "Progress and report as JSON lines");
}

void add_health_command(CLI::App& app, CommandLine& c) {
    c.health = app.add_subcommand("health",
                                  "Run the health checks; commit a slot on trial, or mark it bad");
    c.health->add_flag("--json", c.json, "Print the report as JSON");
}

void add_leave_command(CLI::App& app, CommandLine& c) {
    c.leave = app.add_subcommand(
        "leave", "Leave the k3s cluster (cordon, drain, delete the Node) before a factory reset");
    c.leave->add_option("--timeout", c.leave_timeout, "Seconds the drain may take (default 300)")
        ->check(CLI::Range(1, 86400));
    c.leave->add_flag("--json", c.json, "Print the report as JSON");
}

void add_escrow_command(CLI::App& app, CommandLine& c) {
    c.escrow = app.add_subcommand(
        "escrow", "Hand a recovery key made at boot (a reset) to tpm.recovery_key_command");
    c.escrow->add_flag("--json", c.json, "Print the result as JSON");
}

void add_unlock_command(CLI::App& app, CommandLine& c) {
    c.unlock = app.add_subcommand(
        "unlock", "Open the encrypted persistent partition: TPM2 first, else the recovery key");
    c.unlock->add_option("--device", c.unlock_req.device, "LUKS2 partition or image file")
        ->required()
        ->option_text("PATH");
    c.unlock
        ->add_option("--name", c.unlock_req.name,
                     "Map it as /dev/mapper/NAME (default: only check that it opens)")
        ->option_text("NAME");
    c.unlock
        ->add_option("--tpm2-device", c.unlock_req.tpm2_device,
                     "TPM as a TCTI (default: agent.yaml tpm.device, else /dev/tpmrm0)")
        ->option_text("TCTI");
    c.unlock
        ->add_option("--tpm2-signature", c.unlock_req.tpm2_signature,
                     "Signed PCR policies for signed tokens (default: agent.yaml tpm.signature, "
                     "else /run/systemd/tpm2-pcr-signature.json, /.extra, ...)")
        ->option_text("PATH");
    c.unlock->add_flag("--json", c.json, "Print the result as JSON");
}

void add_mount_command(CLI::App& app, CommandLine& c) {
    c.mount = app.add_subcommand(
        "mount", "Initramfs: assemble the immutable root on the read-only slot (overlays, binds)");
    c.mount
        ->add_option("--sysroot", c.mount_req.sysroot,
                     "The slot, mounted read-only (default /sysroot)")
        ->option_text("DIR")
        ->check(CLI::ExistingDirectory);
    c.mount
        ->add_option("--run-dir", c.mount_req.run_dir,
                     "Where persistent and RAM storage are mounted (default /run/ballast)")
        ->option_text("DIR");
    c.mount
        ->add_option("--device", c.mount_req.device,
                     "Persistent partition (default: agent.yaml mount.device)")
        ->option_text("PATH");
    c.mount->add_flag("--no-stages", c.no_stages, "Do not run the rootfs and initramfs stages");
    c.mount->add_flag("--dry-run", c.dry_run, "Print the mounts; change nothing");
    c.mount->add_flag("--json", c.json, "Print the report as JSON");
}

// A job of the daemon dies with it (the daemon's successor resumes the work). False when the
// daemon that started this job is gone already.
bool follow_parent() {
    const char* parent = std::getenv(agent::kJobParentEnv);
    if (!parent) return true;
    (void)::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (std::to_string(::getppid()) != parent) {
        spdlog::error("the agent that started this job is gone");
        return false;
    }
    // Not for what this job runs (stage commands, health checks).
    ::unsetenv(agent::kJobParentEnv);
    return true;
}

ops::NodeOptions node_options(const CommandLine& c) {
    ops::NodeOptions node;
    node.root = RootPrefix(std::filesystem::absolute(c.root));
    node.disk = c.disk;
    if (!c.config_file.empty()) {
        node.settings_path = c.config_file;
        node.settings_explicit = true;
    } else {
        node.settings_path = node.root(config::kDefaultAgentSettingsPath);
    }
    if (!c.booted_slot.empty()) node.booted_slot = *ops::parse_slot(c.booted_slot);
    return node;
}

// The one-shot mode the command line asks for; nullopt: none, run the daemon.
std::optional<int> run_oneshot(CommandLine& c, const ops::NodeOptions& node) {
    if (c.stage->parsed()) {
        c.stage_mode.dry_run = c.dry_run;
        c.stage_mode.json = c.json;
        if (c.wait_k3s_ready > 0)
            c.stage_mode.wait_k3s_ready = std::chrono::seconds(c.wait_k3s_ready);
        return agent::run_stage_mode(node, c.stage_mode);
    }
    if (c.upgrade->parsed()) {
        if (!c.expect.empty()) c.upgrade_req.expect_manifest_sha256 = c.expect;
        c.upgrade_req.reboot = !c.no_reboot;
        return agent::run_upgrade_mode(node, c.upgrade_req, c.json);
    }
    if (c.health->parsed()) return agent::run_health_mode(node, c.json);
    if (c.escrow->parsed()) return agent::run_escrow_mode(node, c.json);
    if (c.leave->parsed())
        return agent::run_leave_mode(node, std::chrono::seconds(c.leave_timeout), c.json);
    if (c.unlock->parsed()) return agent::run_unlock_mode(node, c.unlock_req, c.json);
    if (c.mount->parsed()) {
        c.mount_req.stages = !c.no_stages;
        c.mount_req.dry_run = c.dry_run;
        return agent::run_mount_mode(node, c.mount_req, c.json);
    }
    return std::nullopt;
}

int run_daemon(const CommandLine& c, ops::NodeOptions node) {
    agent::DaemonOptions opts;
    opts.node = std::move(node);
    opts.bus_address = sdbus::effective_address(c.bus_address);
    if (!c.log_level.empty()) opts.log_level = c.log_level;
    auto daemon = agent::Daemon::create(std::move(opts));
    if (!daemon) {
        spdlog::error("{}", daemon.error().what());
        return agent::kExitFailure;
    }
    if (auto r = (*daemon)->run(); !r) {
        spdlog::error("{}", r.error().what());
        return agent::kExitFailure;
    }
    return 0;
}

int run(int argc, char** argv) {
    ::signal(SIGPIPE, SIG_IGN);
    CLI::App app{"Ballast node agent: A/B updates, cloud-config, TPM-sealed encryption, k3s",
                 "ballast-agent"};
    CommandLine c;
    add_global_options(app, c);
    app.require_subcommand(0, 1);
    app.fallthrough();
    add_stage_command(app, c);
    add_upgrade_command(app, c);
    add_health_command(app, c);
    add_leave_command(app, c);
    add_escrow_command(app, c);
    add_unlock_command(app, c);
    add_mount_command(app, c);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        int rc = app.exit(e);
        return rc == 0 ? 0 : agent::kExitUsage;
    }

    auto level = log::parse_level(c.log_level.empty() ? "info" : c.log_level);
    if (!level) {
        std::fprintf(stderr, "ballast-agent: --log-level: %s\n", level.error().message().c_str());
        return agent::kExitUsage;
    }
    log::init("ballast-agent", *level);
    if (!follow_parent()) return agent::kExitFailure;
    auto node = node_options(c);
    if (auto rc = run_oneshot(c, node)) return *rc;
    return run_daemon(c, std::move(node));
}

}  // namespace

// A bug that throws ends here, with a message and EX_SOFTWARE, not in std::terminate's abort.
int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ballast-agent: internal error: %s\n", e.what());
        return 70;
    }
}
