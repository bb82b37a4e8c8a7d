#include "ballast/stages/executor.hpp"

#include <ctime>
#include <optional>

#include <spdlog/spdlog.h>

#include "ballast/config/stage_names.hpp"
#include "ballast/core/duration.hpp"
#include "ballast/core/files.hpp"
#include "ballast/core/json.hpp"
#include "ballast/core/log.hpp"
#include "ballast/stages/conditions.hpp"
#include "ballast/stages/modules.hpp"
#include "ballast/stages/plan.hpp"
#include "ballast/stages/step_modules.hpp"

namespace ballast::stages {
namespace {

using Clock = std::chrono::steady_clock;

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
        for (const auto& module : step_modules())
            module.apply(s, ctx, m);
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

// Whether the network step of `stage` removes Ballast's documents the config no longer has. Not
// in the initramfs, and not in the boot stage when a datasource step runs in a network stage
// (after boot): network config it fetched at the last boot lives in /run and is not there yet,
// and removing it until the step stores it again would take the node's addresses away at every
// boot. The reconcile stage, and a boot without such a step, do.
bool removes_stale_network(const config::Config& cfg, std::string_view stage) {
    if (stage == "reconcile") return true;
    if (stage != "boot") return false;
    for (const auto& [name, steps] : cfg.stages)
        if (name == "network" || name.starts_with("network."))
            for (const auto& s : steps)
                if (!s.datasource.empty()) return false;
    return true;
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
    // The built-ins act on the whole config: taken again when a step stored new sources.
    std::optional<config::Loaded> fresh;
    if (ctx.sources_changed && ctx.reload_config && !dry_run) {
        if (auto l = ctx.reload_config())
            fresh = std::move(*l);
        else
            spdlog::warn("the config with the fetched sources did not load: {}", l.error().what());
    }
    const config::Config& whole = fresh ? fresh->config : cfg;
    // Built-in: the network config, rendered in the initramfs (netplan's generator picks it up
    // at boot) and kept in step on the running system.
    if ((stage == "initramfs" || stage == "boot" || stage == "reconcile") &&
        modules::network_pending(whole, ctx) && !stopped) {
        if (dry_run)
            res.plan.push_back(
                "network: render the network config with netplan; reload "
                "systemd-networkd if it changed");
        else
            res.steps.push_back(run_builtin("network", res.stage, [&](ModuleResult& m) {
                modules::network(whole, ctx, m, removes_stale_network(whole, stage));
            }));
    }
    // Built-in: k3s follows the config on every boot and reconcile.
    if ((stage == "boot" || stage == "reconcile") && config::wants_k3s(whole) && !stopped) {
        if (dry_run)
            res.plan.push_back(
                "k3s: render config.yaml, unit and environment; restart k3s if "
                "they changed");
        else
            res.steps.push_back(run_builtin("k3s", res.stage,
                                            [&](ModuleResult& m) { modules::k3s(whole, ctx, m); }));
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
