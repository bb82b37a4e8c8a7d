// stage run: through the daemon when it is reachable, else in this process.
#include <cstdio>

#include "ballast/api/names.hpp"
#include "ballast/config/agent_settings.hpp"
#include "ballast/stages/format.hpp"
#include "ballast/stages/runner.hpp"
#include "ctl.hpp"

namespace ballast::ctl {

int cmd_stage_run(const GlobalOptions& g, const std::string& stage,
                  const std::vector<std::string>& files, bool dry_run, bool verbose) {
    if (auto st = stages::check_stage_name(stage); !st) {
        std::fprintf(stderr, "agentctl: %s\n", st.error().what().c_str());
        return kExitUsage;
    }
    std::vector<std::string> abs_files;
    for (const auto& f : files)
        abs_files.push_back(std::filesystem::absolute(f));
    nlohmann::json report;
    auto client = g.root == "/" ? connect_agent(g)
                                : Result<api::AgentClient>(fail(Errc::unavailable, "--root given"));
    if (client) {
        auto r = client->run_stage(stage, dry_run, abs_files);
        if (!r) return report_error(r.error());
        report = std::move(*r);
    } else {
        // No daemon (or another root): run here, as `ballast-agent stage` would.
        RootPrefix root(std::filesystem::absolute(g.root));
        auto settings = config::load_agent_settings(root(config::kDefaultAgentSettingsPath), false);
        if (!settings) return report_error(settings.error());
        stages::RunRequest req;
        req.stage = stage;
        req.root = root;
        req.config_files = abs_files;
        req.dry_run = dry_run;
        stages::apply_settings(req, *settings);
        auto rep = stages::run(req);
        if (!rep) return report_error(rep.error());
        report = rep->to_json();
    }
    if (report.contains("error")) {
        std::fprintf(stderr, "agentctl: stage %s: %s\n", stage.c_str(),
                     report["error"].get<std::string>().c_str());
        return kExitFailure;
    }
    if (g.json)
        print_json(report);
    else
        std::fputs(stages::format_report(report, verbose).c_str(), stdout);
    return report.value("ok", false) ? kExitOk : kExitFailure;
}

}  // namespace ballast::ctl
