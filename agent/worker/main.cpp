// ballast-worker: runs one job for ballast-agent (or for `ballast-agent stage`) and exits. The
// long-running daemon stays small and a crash in a job cannot take it down; this program links
// the stage, download and crypto code. Not meant to be run by hand: its interface is the
// daemon's. Exit codes: 0 success, 1 failure, 2 usage.
//
//   ballast-worker stage NAME [--root DIR] [--settings FILE] [--config FILE]... [--dry-run]
//   [--json]
#include <signal.h>

#include <cstdio>

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "ballast/config/agent_settings.hpp"
#include "ballast/core/log.hpp"
#include "ballast/stages/format.hpp"
#include "ballast/stages/runner.hpp"
#include "ballast_config.h"

namespace {

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

int run_stage(const std::string& root_dir, const std::string& settings_path,
              const std::string& stage, const std::vector<std::string>& configs, bool dry_run,
              bool json) {
    using namespace ballast;
    RootPrefix root(std::filesystem::absolute(root_dir));
    auto settings =
        config::load_agent_settings(settings_path.empty() ? root(config::kDefaultAgentSettingsPath)
                                                          : std::filesystem::path(settings_path),
                                    !settings_path.empty());
    if (!settings) {
        spdlog::error("{}", settings.error().what());
        if (json)
            std::printf(
                "%s\n",
                nlohmann::json{{"ok", false}, {"stage", stage}, {"error", settings.error().what()}}
                    .dump()
                    .c_str());
        return kExitFailure;
    }
    stages::RunRequest req;
    req.stage = stage;
    req.root = root;
    for (const auto& c : configs)
        req.config_files.push_back(std::filesystem::absolute(c));
    req.dry_run = dry_run;
    req.http.ca_file = settings->http.ca_file;
    req.http.proxy = settings->http.proxy;
    auto rep = stages::run(req);
    if (!rep) {
        spdlog::error("stage {}: {}", stage, rep.error().what());
        if (json)
            std::printf(
                "%s\n",
                nlohmann::json{{"ok", false}, {"stage", stage}, {"error", rep.error().what()}}
                    .dump()
                    .c_str());
        return rep.error().code() == Errc::invalid_argument ? kExitUsage : kExitFailure;
    }
    auto j = rep->to_json();
    std::fputs(json ? (j.dump(2) + "\n").c_str() : stages::format_report(j, false).c_str(), stdout);
    return rep->ok() ? 0 : kExitFailure;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace ballast;
    ::signal(SIGPIPE, SIG_IGN);
    CLI::App app{"Ballast job runner (started by ballast-agent)", "ballast-worker"};
    app.set_version_flag("--version", BALLAST_VERSION);
    app.require_subcommand(1);
    app.fallthrough();
    std::string root = "/", settings, log_level = "info";
    app.add_option("--root", root, "Node root")->check(CLI::ExistingDirectory);
    app.add_option("--settings", settings,
                   "Agent settings file (default: /etc/ballast/agent.yaml in the root)");
    app.add_option("--log-level", log_level, "Log level");
    auto* stage = app.add_subcommand("stage", "Run one cloud-config stage");
    std::string name;
    std::vector<std::string> configs;
    bool dry_run = false, json = false;
    stage->add_option("NAME", name)->required();
    stage->add_option("--config", configs, "Extra cloud-config file (repeatable)");
    stage->add_flag("--dry-run", dry_run);
    stage->add_flag("--json", json);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        int rc = app.exit(e);
        return rc == 0 ? 0 : kExitUsage;
    }
    auto level = log::parse_level(log_level);
    if (!level) {
        std::fprintf(stderr, "ballast-worker: %s\n", level.error().message().c_str());
        return kExitUsage;
    }
    // Same identifier as the daemon: a job's records read as the agent's in the journal.
    log::init("ballast-agent", *level);
    if (stage->parsed()) return run_stage(root, settings, name, configs, dry_run, json);
    return kExitUsage;
}
