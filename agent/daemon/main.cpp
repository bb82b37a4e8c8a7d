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

int run(int argc, char** argv) {
    using namespace ballast;
    ::signal(SIGPIPE, SIG_IGN);

    CLI::App app{"Ballast node agent: A/B updates, cloud-config, TPM-sealed encryption, k3s",
                 "ballast-agent"};
    app.set_version_flag("--version", BALLAST_VERSION);
    std::string root = "/", disk, config_file, bus_address, booted_slot, log_level;
    app.add_option("--root", root, "Act on the node rooted at DIR (an image or a test folder)")
        ->option_text("DIR")
        ->check(CLI::ExistingDirectory);
    app.add_option("--disk", disk,
                   "Disk holding the Ballast partitions: block device or image file")
        ->option_text("PATH");
    app.add_option("--config", config_file, "Agent settings (default /etc/ballast/agent.yaml)")
        ->option_text("FILE");
    app.add_option("--bus-address", bus_address,
                   "D-Bus address to serve on instead of the system bus (env BALLAST_BUS_ADDRESS)")
        ->option_text("ADDR");
    app.add_option("--booted-slot", booted_slot,
                   "Act as if booted from this slot (default: ballast.slot= on /proc/cmdline)")
        ->option_text("A|B")
        ->check(CLI::IsMember({"A", "B", "a", "b"}));
    app.add_option("--log-level", log_level,
                   "trace, debug, info, warning, error, critical or off (overrides agent.yaml)")
        ->option_text("LEVEL");

    app.require_subcommand(0, 1);
    app.fallthrough();
    auto* stage_cmd = app.add_subcommand(
        "stage", "Run one cloud-config stage now, without D-Bus (initramfs, early units)");
    std::string stage_name;
    std::vector<std::string> stage_configs;
    bool dry_run = false, json = false;
    stage_cmd
        ->add_option("NAME", stage_name,
                     "Stage: rootfs, initramfs, fs, boot, network, reconcile, or a custom name")
        ->required();
    stage_cmd
        ->add_option("--config", stage_configs,
                     "Extra cloud-config file, after the node's sources (repeatable)")
        ->option_text("FILE");
    stage_cmd->add_flag("--dry-run", dry_run, "Print the plan; change nothing");
    stage_cmd->add_flag("--json", json, "Print the report as JSON");

    auto* upgrade_cmd = app.add_subcommand(
        "upgrade", "Write a bundle into the other slot and activate it (the daemon's upgrade job)");
    ops::UpgradeRequest upgrade_req;
    std::string expect;
    upgrade_cmd->add_option("SOURCE", upgrade_req.source, "Bundle folder, .tar or https:// URL")
        ->required();
    upgrade_cmd->add_flag("--force", upgrade_req.force, "Accept a version that failed here before");
    bool no_reboot = false;
    upgrade_cmd->add_flag("--no-reboot", no_reboot,
                          "Recorded in the journal: the daemon does not reboot when staged");
    upgrade_cmd
        ->add_option("--expect-manifest", expect,
                     "Resuming: the bundle's manifest must have this SHA-256")
        ->option_text("SHA256");
    upgrade_cmd->add_flag("--json", json, "Progress and report as JSON lines");

    auto* health_cmd = app.add_subcommand(
        "health", "Run the health checks; commit a slot on trial, or mark it bad");
    health_cmd->add_flag("--json", json, "Print the report as JSON");

    auto* unlock_cmd = app.add_subcommand(
        "unlock", "Open the encrypted persistent partition: TPM2 first, else the recovery key");
    ops::UnlockRequest unlock_req;
    unlock_cmd->add_option("--device", unlock_req.device, "LUKS2 partition or image file")
        ->required()
        ->option_text("PATH");
    unlock_cmd
        ->add_option("--name", unlock_req.name,
                     "Map it as /dev/mapper/NAME (default: only check that it opens)")
        ->option_text("NAME");
    unlock_cmd
        ->add_option("--tpm2-device", unlock_req.tpm2_device,
                     "TPM as a TCTI (default: agent.yaml tpm.device, else /dev/tpmrm0)")
        ->option_text("TCTI");
    unlock_cmd->add_flag("--json", json, "Print the result as JSON");

    auto* mount_cmd = app.add_subcommand(
        "mount", "Initramfs: assemble the immutable root on the read-only slot (overlays, binds)");
    ops::MountRequest mount_req;
    bool no_stages = false;
    mount_cmd
        ->add_option("--sysroot", mount_req.sysroot,
                     "The slot, mounted read-only (default /sysroot)")
        ->option_text("DIR")
        ->check(CLI::ExistingDirectory);
    mount_cmd
        ->add_option("--run-dir", mount_req.run_dir,
                     "Where persistent and RAM storage are mounted (default /run/ballast)")
        ->option_text("DIR");
    mount_cmd
        ->add_option("--device", mount_req.device,
                     "Persistent partition (default: agent.yaml mount.device)")
        ->option_text("PATH");
    mount_cmd->add_flag("--no-stages", no_stages, "Do not run the rootfs and initramfs stages");
    mount_cmd->add_flag("--dry-run", dry_run, "Print the mounts; change nothing");
    mount_cmd->add_flag("--json", json, "Print the report as JSON");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        int rc = app.exit(e);
        return rc == 0 ? 0 : agent::kExitUsage;
    }

    auto level = log::parse_level(log_level.empty() ? "info" : log_level);
    if (!level) {
        std::fprintf(stderr, "ballast-agent: --log-level: %s\n", level.error().message().c_str());
        return agent::kExitUsage;
    }
    log::init("ballast-agent", *level);

    // A job of the daemon: die with it (the daemon's successor resumes the work).
    if (const char* parent = std::getenv(agent::kJobParentEnv)) {
        (void)::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (std::to_string(::getppid()) != parent) {
            spdlog::error("the agent that started this job is gone");
            return agent::kExitFailure;
        }
        // Not for what this job runs (stage commands, health checks).
        ::unsetenv(agent::kJobParentEnv);
    }

    ops::NodeOptions node;
    node.root = RootPrefix(std::filesystem::absolute(root));
    node.disk = disk;
    if (!config_file.empty()) {
        node.settings_path = config_file;
        node.settings_explicit = true;
    } else {
        node.settings_path = node.root(config::kDefaultAgentSettingsPath);
    }
    if (!booted_slot.empty()) node.booted_slot = *ops::parse_slot(booted_slot);

    if (stage_cmd->parsed())
        return agent::run_stage_mode(node, stage_name, stage_configs, dry_run, json);
    if (upgrade_cmd->parsed()) {
        if (!expect.empty()) upgrade_req.expect_manifest_sha256 = expect;
        upgrade_req.reboot = !no_reboot;
        return agent::run_upgrade_mode(node, upgrade_req, json);
    }
    if (health_cmd->parsed()) return agent::run_health_mode(node, json);
    if (unlock_cmd->parsed()) return agent::run_unlock_mode(node, unlock_req, json);
    if (mount_cmd->parsed()) {
        mount_req.stages = !no_stages;
        mount_req.dry_run = dry_run;
        return agent::run_mount_mode(node, mount_req, json);
    }

    agent::DaemonOptions opts;
    opts.node = std::move(node);
    opts.bus_address = sdbus::effective_address(bus_address);
    if (!log_level.empty()) opts.log_level = log_level;

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
