#include "oneshot.hpp"

#include <cctype>
#include <chrono>
#include <cstdio>
#include <mutex>

#include <spdlog/spdlog.h>

#include "ballast/core/json.hpp"
#include "ballast/crypt/slot_keys.hpp"
#include "ballast/health/checks.hpp"
#include "ballast/k3s/readiness.hpp"
#include "ballast/stages/format.hpp"
#include "ballast/stages/runner.hpp"
#include "ballast/system/http.hpp"
#include "ballast/update/slot_admin.hpp"

namespace ballast::agent {

int report_failure(const char* what, const Error& e, bool json, nlohmann::json extra) {
    spdlog::error("{}: {}", what, e.what());
    if (json) {
        nlohmann::json j = {{"ok", false}, {"error", e.what()}};
        if (extra.is_object()) j.update(extra);
        std::printf("%s\n", json_text(j).c_str());
    }
    return e.code() == Errc::invalid_argument ? kExitUsage : kExitFailure;
}

namespace {

// A Kubernetes label value: [A-Za-z0-9._-], at most 63, alphanumeric at both ends.
std::string label_value(const std::string& s) {
    std::string v;
    for (char c : s.substr(0, 63))
        v += std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-' ? c
                                                                                             : '_';
    while (!v.empty() && !std::isalnum(static_cast<unsigned char>(v.back())))
        v.pop_back();
    while (!v.empty() && !std::isalnum(static_cast<unsigned char>(v.front())))
        v.erase(v.begin());
    return v;
}

// Best effort: the slot, version and last upgrade on the Node object, for `kubectl get nodes`.
void publish_node(const NodeOptions& node, const std::string& disk, nlohmann::json& out) {
    nlohmann::json labels = {{"ballast.io/managed", "true"}};
    nlohmann::json annotations = {{"ballast.io/health", out.value("summary", "")}};
    const auto booted = resolve_booted(node);
    if (booted) labels["ballast.io/slot"] = std::string(boot::name(*booted));
    if (booted && !disk.empty())
        if (auto db = boot::DiskBoot::open(disk))
            if (auto st = db->control().load(false))
                labels["ballast.io/version"] = label_value(st->at(*booted).version);
    if (auto j = update::load_journal(update::journal_path(state_dir(node))); j && *j) {
        const auto& u = **j;
        annotations["ballast.io/last-upgrade"] =
            http::redact(fmt::format("{} {} ({}){}", update::name(u.state), u.version, u.updated,
                                     u.error.empty() ? "" : ": " + u.error));
    }
    if (auto st = k3s::publish(node.root, labels, annotations, std::chrono::seconds(10)); !st) {
        spdlog::warn("publish the node's state to Kubernetes: {}", st.error().what());
        out["publish_error"] = st.error().what();
    } else {
        out["published"] = labels;
    }
}

// After a commit: TPM2 tokens for measurements that no longer occur go. Best effort: a token
// left behind costs nothing but a keyslot.
std::string drop_stale_keys(const config::AgentSettings& settings) {
    auto keys = crypt::key_policy(settings);
    if (keys && !*keys) return "nothing encrypted";
    auto done = keys ? crypt::drop_stale_tokens(**keys) : std::unexpected(keys.error());
    if (!done) {
        spdlog::warn("remove stale TPM2 keyslots: {}", done.error().what());
        return "remove stale TPM2 keyslots: " + done.error().what();
    }
    spdlog::info("{}", *done);
    return *done;
}

Result<config::AgentSettings> settings_of(const NodeOptions& node) {
    return config::load_agent_settings(node.settings_path, node.settings_explicit);
}

}  // namespace

int run_stage_mode(const NodeOptions& node, const std::string& stage,
                   const std::vector<std::string>& configs, bool dry_run, bool json) {
    auto settings = settings_of(node);
    if (!settings) return report_failure("stage", settings.error(), json, {{"stage", stage}});
    stages::RunRequest req;
    req.stage = stage;
    req.root = node.root;
    for (const auto& c : configs)
        req.config_files.push_back(std::filesystem::absolute(c));
    req.dry_run = dry_run;
    stages::apply_settings(req, *settings);
    auto rep = stages::run(req);
    if (!rep) return report_failure("stage", rep.error(), json, {{"stage", stage}});
    auto j = rep->to_json();
    std::fputs(json ? (json_text(j, 2) + "\n").c_str() : stages::format_report(j, false).c_str(),
               stdout);
    return rep->ok() ? 0 : kExitFailure;
}

int run_upgrade_mode(const NodeOptions& node, const update::UpgradeRequest& req, bool json) {
    auto settings = settings_of(node);
    if (!settings) return report_failure("upgrade", settings.error(), json);
    const std::string disk = resolve_disk(node, *settings);
    if (disk.empty())
        return report_failure("upgrade", Error(Errc::unavailable, "no Ballast disk found"), json);
    auto db = boot::DiskBoot::open(disk);
    if (!db) return report_failure("upgrade", db.error(), json);
    update::UpgradeEnv env;
    env.disk = &*db;
    env.booted = resolve_booted(node);
    env.state_dir = state_dir(node);
    env.source = source_options(node, *settings);
    env.compatible = update::node_compatible(settings->update.compatible, node.root);
    env.tries = int(settings->update.tries);
    env.root = node.root;
    env.key_hook = [&settings]() -> Status {
        auto keys = BALLAST_TRY(crypt::key_policy(*settings));
        if (!keys) return {};  // nothing encrypted
        spdlog::info("{}", BALLAST_TRY(crypt::prepare_next_boot(*keys)));
        return {};
    };

    // Progress: at most one line per percent and phase, and per 200 ms.
    std::mutex m;
    std::string last_phase;
    int last_pct = -1;
    auto last_t = std::chrono::steady_clock::now();
    auto progress = [&](std::string_view phase, uint64_t done, uint64_t total) {
        std::lock_guard l(m);
        const int pct = total ? int(done * 100 / total) : 0;
        const auto now = std::chrono::steady_clock::now();
        const bool new_phase = phase != last_phase;
        if (!new_phase && (pct == last_pct || now - last_t < std::chrono::milliseconds(200)) &&
            done != total)
            return;
        last_phase = phase;
        last_pct = pct;
        last_t = now;
        if (json) {
            std::printf(
                "%s\n",
                json_text(nlohmann::json{
                              {"progress", {{"phase", phase}, {"done", done}, {"total", total}}}})
                    .c_str());
            std::fflush(stdout);
        } else if (new_phase || pct % 10 == 0) {
            spdlog::info("{} {}%", phase, pct);
        }
    };
    auto r = update::upgrade(req, env, progress);
    if (!r) return report_failure("upgrade", r.error(), json);
    if (json)
        std::printf("%s\n", json_text(r->to_json()).c_str());
    else if (r->already)
        std::printf("slot %s already runs %s; nothing to do\n",
                    std::string(boot::name(r->target)).c_str(), r->version.c_str());
    else
        std::printf("upgraded to %s in slot %s (%.1f s); it boots on trial at the next reboot\n",
                    r->version.c_str(), std::string(boot::name(r->target)).c_str(), r->seconds);
    return 0;
}

int run_health_mode(const NodeOptions& node, bool json) {
    auto settings = settings_of(node);
    if (!settings) return report_failure("health", settings.error(), json);
    // k3s readiness is part of the verdict wherever the k3s step set k3s up.
    std::vector<health::Probe> probes;
    auto k3s_state = k3s::load_state(node.root);
    if (!k3s_state) return report_failure("health", k3s_state.error(), json);
    if (*k3s_state) {
        const auto st = **k3s_state;
        const auto per_probe = settings->k3s.readiness_deadline;
        probes.push_back([&node, st, per_probe](std::chrono::milliseconds left) {
            auto r = k3s::probe(node.root, st, std::min(left, per_probe));
            return health::CheckResult{"k3s " + std::string(k3s::name(st.role)) + " ready", r.ready,
                                       r.detail};
        });
    }
    auto rep = health::assess(settings->health, health::systemd_unit_state, probes);
    nlohmann::json out = {{"ok", rep.ok}, {"health", rep.to_json()}, {"trial", false}};
    const std::string disk = resolve_disk(node, *settings);
    if (!disk.empty()) {
        auto db = boot::DiskBoot::open(disk);
        if (!db) return report_failure("health", db.error(), json, out);
        update::SlotEnv env{&*db, resolve_booted(node), state_dir(node)};
        auto trial = update::record_health(env, rep.ok, rep.summary());
        if (!trial) return report_failure("health", trial.error(), json, out);
        out["trial"] = trial->trial;
        out["committed"] = trial->trial && rep.ok;
        out["reboot"] = trial->trial && !rep.ok;
        if (trial->trial) out["message"] = trial->message;
        if (trial->trial && rep.ok) out["keys"] = drop_stale_keys(*settings);
    }
    out["summary"] = rep.summary();
    if (*k3s_state) publish_node(node, disk, out);
    if (json)
        std::printf("%s\n", json_text(out).c_str());
    else
        std::printf("health: %s (%s)\n", rep.ok ? "passed" : "FAILED", rep.summary().c_str());
    return rep.ok ? 0 : kExitFailure;
}

}  // namespace ballast::agent
