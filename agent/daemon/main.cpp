// ballast-agent: the daemon (no sub-command), plus one-shot modes for early boot added by later
// modules. Exit codes: 0 success, 1 failure, 2 usage error.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include <cstdio>
#include <optional>
#include <string>

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "ballast/config/agent_settings.hpp"
#include "ballast/core/log.hpp"
#include "ballast/stages/format.hpp"
#include "ballast/stages/runner.hpp"
#include "ballast/system/sdbus.hpp"
#include "ballast_config.h"
#include "daemon.hpp"

namespace {

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

// `ballast-agent stage NAME`: the stage in this process, report on stdout, exit 1 on any error.
// The daemon runs its stage jobs the same way, as a child process.
int run_stage_mode(const std::filesystem::path& root_dir, const std::string& stage,
                   const std::vector<std::string>& configs, bool dry_run, bool json,
                   const std::string& settings_path) {
    using namespace ballast;
    RootPrefix root(root_dir);
    auto report_failure = [&](const Error& e) {
        spdlog::error("stage {}: {}", stage, e.what());
        if (json)
            std::printf("%s\n", nlohmann::json{{"ok", false}, {"stage", stage}, {"error", e.what()}}
                                    .dump()
                                    .c_str());
        return e.code() == Errc::invalid_argument ? kExitUsage : kExitFailure;
    };
    auto settings =
        config::load_agent_settings(settings_path.empty() ? root(config::kDefaultAgentSettingsPath)
                                                          : std::filesystem::path(settings_path),
                                    !settings_path.empty());
    if (!settings) return report_failure(settings.error());
    stages::RunRequest req;
    req.stage = stage;
    req.root = root;
    for (const auto& c : configs)
        req.config_files.push_back(std::filesystem::absolute(c));
    req.dry_run = dry_run;
    req.http.ca_file = settings->http.ca_file;
    req.http.proxy = settings->http.proxy;
    auto rep = stages::run(req);
    if (!rep) return report_failure(rep.error());
    auto j = rep->to_json();
    std::fputs(json ? (j.dump(2) + "\n").c_str() : stages::format_report(j, false).c_str(), stdout);
    return rep->ok() ? 0 : kExitFailure;
}

}  // namespace

int main(int argc, char** argv) {
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

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        int rc = app.exit(e);
        return rc == 0 ? 0 : kExitUsage;
    }

    auto level = log::parse_level(log_level.empty() ? "info" : log_level);
    if (!level) {
        std::fprintf(stderr, "ballast-agent: --log-level: %s\n", level.error().message().c_str());
        return kExitUsage;
    }
    log::init("ballast-agent", *level);

    if (stage_cmd->parsed()) {
        return run_stage_mode(std::filesystem::absolute(root), stage_name, stage_configs, dry_run,
                              json, config_file);
    }

    agent::DaemonOptions opts;
    opts.root = RootPrefix(std::filesystem::absolute(root));
    opts.disk = disk;
    if (!config_file.empty()) {
        opts.settings_path = config_file;
        opts.settings_explicit = true;
    } else {
        opts.settings_path = opts.root(config::kDefaultAgentSettingsPath);
    }
    opts.bus_address = sdbus::effective_address(bus_address);
    if (!booted_slot.empty()) opts.booted_slot = *boot::parse_slot(booted_slot);
    if (!log_level.empty()) opts.log_level = log_level;

    auto daemon = agent::Daemon::create(std::move(opts));
    if (!daemon) {
        spdlog::error("{}", daemon.error().what());
        return kExitFailure;
    }
    if (auto r = (*daemon)->run(); !r) {
        spdlog::error("{}", r.error().what());
        return kExitFailure;
    }
    return 0;
}
