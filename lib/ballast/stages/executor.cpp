#include "ballast/stages/executor.hpp"

#include <ctime>
#include <regex>

#include <spdlog/spdlog.h>

#include "ballast/core/duration.hpp"
#include "ballast/core/files.hpp"
#include "ballast/core/json.hpp"
#include "ballast/core/log.hpp"
#include "ballast/stages/modules.hpp"
#include "ballast/stages/plan.hpp"

namespace ballast::stages {
namespace {

using Clock = std::chrono::steady_clock;

std::string fact(const StageContext& ctx, const char* a, const char* b) {
    const auto& v = ctx.facts;
    if (!v.contains("Values") || !v["Values"].contains(a) || !v["Values"][a].contains(b)) return "";
    const auto& x = v["Values"][a][b];
    return x.is_string() ? x.get<std::string>() : json_text(x);
}

// Go-regexp-like search (unanchored). An invalid pattern skips the step with the reason.
std::optional<std::string> regex_mismatch(const std::string& pattern, const std::string& value,
                                          const char* what) {
    try {
        if (std::regex_search(value, std::regex(pattern))) return std::nullopt;
        return fmt::format("{} '{}' does not match /{}/", what, value, pattern);
    } catch (const std::regex_error&) {
        return fmt::format("invalid {} pattern /{}/", what, pattern);
    }
}

// Why the step is skipped, or nullopt to run it. yip's order: node, if, only_os,
// only_os_version, only_arch, only_service_manager, if_files.
std::optional<std::string> skip_reason(const config::Step& s, StageContext& ctx) {
    if (!s.node.empty()) {
        std::string host = ctx.facts.value("Hostname", "");
        if (auto m = regex_mismatch(s.node, host, "hostname")) return m;
    }
    if (!s.if_cmd.empty()) {
        auto r = run_shell(ctx, s.if_cmd, {{}, std::chrono::seconds(60), s.id});
        if (!r) return "if: " + r.error().what();
        if (!r->success()) return fmt::format("if: '{}' {}", s.if_cmd, r->describe());
    }
    if (!s.only_os.empty())
        if (auto m = regex_mismatch(s.only_os, fact(ctx, "os", "name"), "OS")) return m;
    if (!s.only_os_version.empty())
        if (auto m = regex_mismatch(s.only_os_version, fact(ctx, "os", "version"), "OS version"))
            return m;
    if (!s.only_arch.empty())
        if (auto m =
                regex_mismatch(s.only_arch, ctx.facts["Values"].value("arch", ""), "architecture"))
            return m;
    if (!s.only_service_manager.empty()) {
        auto exists = [&](const char* p) {
            auto st = stat_beneath(ctx.root, p);
            return st && st->has_value();
        };
        bool systemd = exists("/usr/bin/systemctl") || exists("/bin/systemctl") ||
                       exists("/usr/sbin/systemctl");
        bool openrc =
            exists("/sbin/openrc") || exists("/usr/sbin/openrc") || exists("/usr/bin/openrc");
        std::string have = systemd && !openrc   ? "systemd"
                           : openrc && !systemd ? "openrc"
                                                : "unknown";
        if (have != s.only_service_manager)
            return fmt::format("service manager is {}, not {}", have, s.only_service_manager);
    }
    auto exists = [&](const std::string& p) {
        auto st = stat_beneath(ctx.root, p);
        return st && st->has_value();
    };
    for (const auto& f : s.if_files.all)
        if (!exists(f)) return "if_files.all: " + f + " does not exist";
    if (!s.if_files.any.empty() &&
        std::none_of(s.if_files.any.begin(), s.if_files.any.end(), exists))
        return "if_files.any: none of the files exists";
    for (const auto& f : s.if_files.none)
        if (exists(f)) return "if_files.none: " + f + " exists";
    return std::nullopt;
}

using ModuleFn = void (*)(const config::Step&, StageContext&, ModuleResult&);

// yip's plugin order (git, layout, packages are not run here).
constexpr ModuleFn kModules[] = {
    modules::dns,        modules::downloads, modules::ensure_entities, modules::directories,
    modules::files,      modules::commands,  modules::delete_entities, modules::hostname,
    modules::sysctl,     modules::users,     modules::authorized_keys, modules::kernel_modules,
    modules::timesyncd,  modules::systemctl, modules::environment,     modules::systemd_firstboot,
    modules::datasource,
};

// What the modules did becomes the step's result and status.
void take_result(StepResult& r, ModuleResult&& m) {
    r.changes = std::move(m.changes);
    r.errors = std::move(m.errors);
    r.notes = std::move(m.notes);
    r.status = !r.errors.empty()    ? StepStatus::failed
               : !r.changes.empty() ? StepStatus::changed
                                    : StepStatus::unchanged;
}

// A step that is not in the config (k3s): reported like the others.
StepResult run_builtin(const std::string& id, const std::string& stage,
                       const std::function<void(ModuleResult&)>& fn) {
    StepResult r;
    r.id = id;
    r.name = id;
    r.stage = stage;
    r.source = "(built-in)";
    const auto t0 = Clock::now();
    ModuleResult m;
    fn(m);
    take_result(r, std::move(m));
    r.duration = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0);
    for (const auto& e : r.errors)
        spdlog::error("{}: {}", id, e);
    for (const auto& c : r.changes)
        spdlog::info("{}: {}", id, c);
    return r;
}

StepResult run_step(const config::Step& s, StageContext& ctx) {
    StepResult r;
    r.id = s.id;
    r.name = s.name;
    r.stage = s.stage;
    r.source = to_string(config::Position{s.pos.file, s.pos.line, 0});
    auto t0 = Clock::now();
    log::ScopedField f1("BALLAST_STAGE", s.stage), f2("BALLAST_STEP", s.id);
    if (auto why = skip_reason(s, ctx)) {
        r.status = StepStatus::skipped;
        r.reason = *why;
    } else {
        ModuleResult m;
        for (auto fn : kModules)
            fn(s, ctx, m);
        if (s.has_layout) m.note("layout: applied by `agentctl install`, not by stages");
        take_result(r, std::move(m));
    }
    r.duration = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0);
    switch (r.status) {
        case StepStatus::failed:
            for (const auto& e : r.errors)
                spdlog::error("{}: {}", s.id, e);
            break;
        case StepStatus::skipped:
            spdlog::info("{}: skipped: {}", s.id, r.reason);
            break;
        default:
            for (const auto& c : r.changes)
                spdlog::info("{}: {}", s.id, c);
            spdlog::debug("{}: {}", s.id, to_string(r.status));
    }
    return r;
}

}  // namespace

StageResult run_stage(const config::Config& cfg, std::string_view stage, StageContext& ctx,
                      bool dry_run) {
    StageResult res;
    res.stage = std::string(stage);
    res.dry_run = dry_run;
    res.started_at = now_utc();
    auto t0 = Clock::now();
    auto plan = plan_stage(cfg, stage);
    for (const auto& e : plan.errors) {
        StepResult r;
        r.id = "(plan)";
        r.stage = res.stage;
        r.status = StepStatus::failed;
        r.errors = {e};
        res.steps.push_back(std::move(r));
    }
    bool stopped = false;
    for (const config::Step* s : plan.steps) {
        if (dry_run) {
            StepResult r;
            r.id = s->id;
            r.name = s->name;
            r.stage = s->stage;
            r.source = to_string(config::Position{s->pos.file, s->pos.line, 0});
            r.status = StepStatus::not_run;
            r.reason = "dry run";
            for (auto& line : describe_step(*s))
                res.plan.push_back(s->id + ": " + line);
            res.steps.push_back(std::move(r));
            continue;
        }
        if (stopped) {
            StepResult r;
            r.id = s->id;
            r.name = s->name;
            r.stage = s->stage;
            r.status = StepStatus::not_run;
            r.reason = "an earlier strict step failed";
            res.steps.push_back(std::move(r));
            continue;
        }
        res.steps.push_back(run_step(*s, ctx));
        if (res.steps.back().status == StepStatus::failed && (s->strict || cfg.strict))
            stopped = true;
    }
    // Built-in: k3s follows the config on every boot and reconcile.
    const bool wants_k3s = cfg.k3s.enabled || cfg.k3s_agent.enabled || cfg.k3os.present;
    if ((stage == "boot" || stage == "reconcile") && wants_k3s && !stopped) {
        if (dry_run)
            res.plan.push_back(
                "k3s: render config.yaml, unit and environment; restart k3s if "
                "they changed");
        else
            res.steps.push_back(
                run_builtin("k3s", res.stage, [&](ModuleResult& m) { modules::k3s(cfg, ctx, m); }));
    }
    res.duration = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0);
    return res;
}

Status record_result(const RootPrefix& root, const StageResult& result) {
    BALLAST_TRY(mkdirs_beneath(root, "/run/ballast/stages", 0755));
    return write_beneath(root, "/run/ballast/stages/" + result.stage + ".json",
                         json_text(result.to_json(), 2) + "\n", 0644);
}

}  // namespace ballast::stages
