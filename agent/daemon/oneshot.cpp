#include "oneshot.hpp"

#include <cstdio>
#include <mutex>

#include <spdlog/spdlog.h>

#include "ballast/core/duration.hpp"
#include "ballast/core/json.hpp"
#include "ballast/ops/escrow.hpp"
#include "ballast/ops/health.hpp"
#include "ballast/ops/progress.hpp"
#include "ballast/ops/report.hpp"
#include "ballast/ops/upgrade.hpp"
#include "ballast/stages/format.hpp"
#include "ballast/stages/runner.hpp"

namespace ballast::agent {

int report_failure(const char* what, const Error& e, bool json, nlohmann::json extra) {
    spdlog::error("{}: {}", what, e.what());
    if (json) std::printf("%s\n", json_text(ops::failure_report(e, std::move(extra))).c_str());
    return e.code() == Errc::invalid_argument ? kExitUsage : kExitFailure;
}

int run_stage_mode(const ops::NodeOptions& node, const StageMode& mode) {
    const std::string& stage = mode.stage;
    auto settings = ops::load_settings(node);
    if (!settings) return report_failure("stage", settings.error(), mode.json, {{"stage", stage}});
    if (mode.wait_k3s_ready && !mode.dry_run) {
        auto waited = ops::wait_k3s_ready(node.root, *settings, *mode.wait_k3s_ready,
                                          std::chrono::seconds(2));
        if (!waited) return report_failure("stage", waited.error(), mode.json, {{"stage", stage}});
        if (!waited->set_up) {
            const std::string msg = "k3s is not set up here: the " + stage + " stage does not run";
            if (mode.json)
                std::printf(
                    "%s\n",
                    json_text(nlohmann::json{
                                  {"ok", true}, {"stage", stage}, {"ran", false}, {"message", msg}})
                        .c_str());
            else
                std::printf("%s\n", msg.c_str());
            return 0;
        }
        if (!waited->ready)
            return report_failure(
                "stage",
                Error(
                    Errc::timeout,
                    fmt::format("k3s did not report ready within {} ({}): the {} stage did not run",
                                format_duration(*mode.wait_k3s_ready), waited->detail, stage)),
                mode.json, {{"stage", stage}});
        spdlog::info("k3s reported ready after {:.1f}s: running the {} stage", waited->seconds,
                     stage);
    }
    stages::RunRequest req;
    req.stage = stage;
    req.root = node.root;
    for (const auto& c : mode.configs)
        req.config_files.push_back(std::filesystem::absolute(c));
    req.dry_run = mode.dry_run;
    req.access_only = mode.access_only;
    stages::apply_settings(req, *settings);
    auto rep = stages::run(req);
    if (!rep) return report_failure("stage", rep.error(), mode.json, {{"stage", stage}});
    auto j = rep->to_json();
    std::fputs(
        mode.json ? (json_text(j, 2) + "\n").c_str() : stages::format_report(j, false).c_str(),
        stdout);
    return rep->ok() ? 0 : kExitFailure;
}

int run_leave_mode(const ops::NodeOptions& node, std::chrono::seconds timeout, bool json) {
    auto rep = ops::leave_cluster(node.root, timeout);
    if (!rep) return report_failure("leave", rep.error(), json);
    if (json) {
        std::printf("%s\n", json_text(*rep).c_str());
    } else if (!(*rep)["left"].get<bool>()) {
        std::printf("leave: %s\n", (*rep)["detail"].get<std::string>().c_str());
    } else {
        const auto detail = (*rep)["detail"].get<std::string>();
        std::printf("left the cluster: node %s cordoned, %zu pods evicted, deleted%s\n",
                    (*rep)["node"].get<std::string>().c_str(), (*rep)["evicted"].size(),
                    detail.empty() ? "" : (" (" + detail + ")").c_str());
    }
    return 0;
}

int run_escrow_mode(const ops::NodeOptions& node, bool json) {
    auto settings = ops::load_settings(node);
    if (!settings) return report_failure("escrow", settings.error(), json);
    auto done = ops::escrow_pending(node.root, *settings);
    if (!done) return report_failure("escrow", done.error(), json);
    const std::string msg = *done ? "the recovery key made at boot went to tpm.recovery_key_command"
                                  : "no recovery key waits for the escrow";
    if (json)
        std::printf(
            "%s\n",
            json_text(nlohmann::json{{"ok", true}, {"escrowed", *done}, {"message", msg}}).c_str());
    else
        std::printf("escrow: %s\n", msg.c_str());
    return 0;
}

int run_upgrade_mode(const ops::NodeOptions& options, const ops::UpgradeRequest& req, bool json) {
    auto node = ops::Node::open(options);
    if (!node) return report_failure("upgrade", node.error(), json);
    std::mutex m;
    ops::ProgressThrottle throttle;
    auto progress = [&](std::string_view phase, uint64_t done, uint64_t total) {
        const ops::ProgressLine line{std::string(phase), done, total};
        std::lock_guard l(m);
        if (!throttle.take(line, ops::Clock::now())) return;
        if (json) {
            std::printf("%s\n", json_text(line.to_json()).c_str());
            std::fflush(stdout);
        } else if (throttle.new_phase() || throttle.percent() % 10 == 0) {
            spdlog::info("{} {}%", phase, throttle.percent());
        }
    };
    auto r = ops::upgrade(*node, req, progress);
    if (!r) return report_failure("upgrade", r.error(), json);
    if (json)
        std::printf("%s\n", json_text(r->to_json()).c_str());
    else if (r->dry_run)
        std::printf("dry run: %s to %s in slot %s: %s\n", r->from_version.c_str(),
                    r->version.c_str(), std::string(ops::name(r->target)).c_str(),
                    update::describe(r->plan).c_str());
    else if (r->already)
        std::printf("slot %s already runs %s; nothing to do\n",
                    std::string(ops::name(r->target)).c_str(), r->version.c_str());
    else
        std::printf("upgraded to %s in slot %s (%.1f s); it boots on trial at the next reboot\n",
                    r->version.c_str(), std::string(ops::name(r->target)).c_str(), r->seconds);
    return 0;
}

int run_health_mode(const ops::NodeOptions& options, bool json) {
    auto node = ops::Node::open(options);
    if (!node) return report_failure("health", node.error(), json);
    auto rep = ops::check_health(*node);
    if (!rep) return report_failure("health", rep.error(), json);
    if (rep->error) return report_failure("health", *rep->error, json, rep->to_json());
    if (json)
        std::printf("%s\n", json_text(rep->to_json()).c_str());
    else
        std::printf("health: %s (%s)\n", rep->ok ? "passed" : "FAILED", rep->summary.c_str());
    return rep->ok ? 0 : kExitFailure;
}

int run_unlock_mode(const ops::NodeOptions& node, const ops::UnlockRequest& req, bool json) {
    auto settings = ops::load_settings(node);
    if (!settings) return report_failure("unlock", settings.error(), json);
    auto opened = ops::unlock(*settings, req);
    if (!opened) return report_failure("unlock", opened.error(), json);
    spdlog::info("unlocked {} with {} (keyslot {}) in {} ms", req.device, opened->method,
                 opened->keyslot, opened->ms);
    if (json) std::printf("%s\n", json_text(opened->to_json()).c_str());
    return 0;
}

int run_mount_mode(const ops::NodeOptions& node, const ops::MountRequest& req, bool json) {
    const RootPrefix sysroot(std::filesystem::absolute(req.sysroot));
    auto settings = ops::mount_settings(node, sysroot, req.dry_run);
    if (!settings) return report_failure("mount", settings.error(), json);
    if (req.dry_run) {
        auto steps = ops::mount_plan(req, settings->settings);
        if (!steps) return report_failure("mount", steps.error(), json);
        if (json) {
            nlohmann::json j = nlohmann::json::array();
            for (const auto& s : *steps)
                j.push_back(s.to_json());
            std::printf("%s\n", json_text(nlohmann::json{{"ok", true}, {"plan", j}}, 2).c_str());
        } else {
            for (const auto& s : *steps)
                std::printf("%s\n", s.describe().c_str());
        }
        return 0;
    }
    auto rep = ops::mount_root(node, req, *settings);
    if (!rep) {
        // Not assembled: the node must not come up as itself (the generator reads the mark).
        ops::mark_recovery(req.run_dir, "the root could not be assembled: " + rep.error().what(),
                           false);
        return report_failure("mount", rep.error(), json);
    }
    if (json) {
        std::printf("%s\n", json_text(rep->to_json()).c_str());
    } else {
        for (const auto& e : rep->mounts.errors())
            std::fprintf(stderr, "ballast: mount: %s\n", e.c_str());
        std::printf(
            "mount: %s%s\n", rep->ok() ? "root assembled" : "root assembled with errors",
            rep->mounts.persistent ? "" : " (persistent storage NOT mounted: state is in RAM)");
    }
    return rep->ok() ? 0 : kExitFailure;
}

}  // namespace ballast::agent
