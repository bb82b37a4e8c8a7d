#include "ballast/ops/health.hpp"

#include <cctype>
#include <chrono>

#include <spdlog/spdlog.h>

#include "ballast/core/json.hpp"
#include "ballast/crypt/slot_keys.hpp"
#include "ballast/k3s/readiness.hpp"
#include "ballast/ops/mount.hpp"
#include "ballast/system/http.hpp"
#include "ballast/update/journal.hpp"
#include "ballast/update/slot_admin.hpp"
#include "ballast/update/upgrade.hpp"

namespace ballast::ops {
namespace {

bool alnum(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0;
}

health::Probe k3s_probe(const RootPrefix& root, const k3s::NodeState& st,
                        const config::AgentSettings& settings) {
    const auto per_probe = settings.k3s.readiness_deadline;
    return [root, st, per_probe](std::chrono::milliseconds left) {
        auto r = k3s::probe(root, st, std::min(left, per_probe));
        return health::CheckResult{"k3s " + std::string(k3s::name(st.role)) + " ready", r.ready,
                                   r.detail};
    };
}

// Best effort: the slot, version and last upgrade on the Node object, for `kubectl get nodes`.
void publish_node(const Node& node, boot::BootControl* control, HealthReport& out) {
    nlohmann::json labels = {{"ballast.io/managed", "true"}};
    nlohmann::json annotations = {{"ballast.io/health", out.summary}};
    if (node.booted) labels["ballast.io/slot"] = std::string(boot::name(*node.booted));
    if (node.booted && control)
        if (auto st = control->load(false))
            labels["ballast.io/version"] = label_value(st->at(*node.booted).version);
    if (auto j = update::load_journal(update::journal_path(node.state_dir)); j && *j) {
        const auto& u = **j;
        annotations["ballast.io/last-upgrade"] =
            http::redact(fmt::format("{} {} ({}){}", update::name(u.state), u.version, u.updated,
                                     u.error.empty() ? "" : ": " + u.error));
    }
    if (auto st = k3s::publish(node.options.root, labels, annotations, std::chrono::seconds(10));
        !st) {
        spdlog::warn("publish the node's state to Kubernetes: {}", st.error().what());
        out.publish_error = st.error().what();
    } else {
        out.published = labels;
    }
}

// After a commit: TPM2 tokens for measurements that no longer occur go. Best effort: a token
// left behind costs nothing but a keyslot.
std::string drop_stale_keys(const config::AgentSettings& settings) {
    auto keys = crypt::key_policy(settings.tpm);
    if (keys && !*keys) return "nothing encrypted";
    auto done = keys ? crypt::drop_stale_tokens(**keys) : std::unexpected(keys.error());
    if (!done) {
        spdlog::warn("remove stale TPM2 keyslots: {}", done.error().what());
        return "remove stale TPM2 keyslots: " + done.error().what();
    }
    spdlog::info("{}", *done);
    return *done;
}

}  // namespace

std::string label_value(const std::string& s) {
    std::string v;
    for (char c : s.substr(0, 63))
        v += alnum(c) || c == '.' || c == '_' || c == '-' ? c : '_';
    while (!v.empty() && !alnum(v.back()))
        v.pop_back();
    while (!v.empty() && !alnum(v.front()))
        v.erase(v.begin());
    return v;
}

nlohmann::json HealthReport::to_json() const {
    nlohmann::json j = {{"ok", ok}, {"health", health}, {"trial", trial}};
    if (error) {
        j["error"] = error->what();
        return j;
    }
    if (has_disk) {
        j["committed"] = committed;
        j["reboot"] = reboot;
        if (trial) j["message"] = message;
        if (keys) j["keys"] = *keys;
    }
    j["summary"] = summary;
    if (published) j["published"] = *published;
    if (publish_error) j["publish_error"] = *publish_error;
    return j;
}

HealthReport HealthReport::from_json(const nlohmann::json& j) {
    HealthReport r;
    r.ok = json_field<bool>(j, "ok", false);
    if (j.is_object() && j.contains("health")) r.health = j["health"];
    r.trial = json_field<bool>(j, "trial", false);
    r.has_disk = j.is_object() && j.contains("committed");
    r.committed = json_field<bool>(j, "committed", false);
    r.reboot = json_field<bool>(j, "reboot", false);
    r.message = json_field<std::string>(j, "message", "");
    r.summary = json_field<std::string>(j, "summary", "");
    if (j.is_object() && j.contains("keys")) r.keys = json_field<std::string>(j, "keys", "");
    if (j.is_object() && j.contains("published")) r.published = j["published"];
    if (j.is_object() && j.contains("publish_error"))
        r.publish_error = json_field<std::string>(j, "publish_error", "");
    if (j.is_object() && j.contains("error"))
        r.error = Error(Errc::failed, json_field<std::string>(j, "error", "(not a string)"));
    return r;
}

std::string HealthReport::message_line() const {
    if (error) return error->what();
    if (trial) return message;
    return "health check: " + summary;
}

HealthReport verdict(const health::Settings& h, const HealthEnv& env) {
    auto rep = health::assess(h, env.unit_state, env.probes);
    HealthReport out;
    out.ok = rep.ok;
    out.health = rep.to_json();
    out.summary = rep.summary();
    if (env.control) {
        update::SlotEnv slots{env.control, env.booted, env.state_dir};
        auto trial = update::record_health(slots, rep.ok, rep.summary());
        if (!trial) {
            out.ok = false;
            out.error = trial.error();
            return out;
        }
        out.has_disk = true;
        out.trial = trial->trial;
        out.committed = trial->trial && rep.ok;
        out.reboot = trial->trial && !rep.ok;
        if (trial->trial) out.message = trial->message;
        if (out.committed && env.drop_stale_keys) out.keys = env.drop_stale_keys();
    }
    if (env.publish) env.publish(out);
    return out;
}

Result<HealthReport> check_health(const Node& node) {
    if (auto r = recovery_boot(node.options.root))
        return fail(Errc::unavailable,
                    "a recovery boot ({}) is not assessed: nothing is committed or marked bad",
                    (*r)["reason"].get<std::string>());
    HealthEnv env;
    env.unit_state = health::systemd_unit_state;
    env.booted = node.booted;
    env.state_dir = node.state_dir;
    // k3s readiness is part of the verdict wherever the k3s step set k3s up.
    auto k3s_state = BALLAST_TRY(k3s::load_state(node.options.root));
    if (k3s_state) env.probes.push_back(k3s_probe(node.options.root, *k3s_state, node.settings));
    std::optional<boot::DiskBoot> db;
    if (!node.disk.empty()) {
        auto opened = boot::DiskBoot::open(node.disk);
        if (!opened) {
            // The checks still run and are reported; nothing can be recorded.
            HealthReport failed = verdict(node.settings.health, env);
            failed.ok = false;
            failed.error = opened.error();
            return failed;
        }
        db.emplace(std::move(*opened));
        env.control = &db->control();
    }
    env.drop_stale_keys = [&node] { return drop_stale_keys(node.settings); };
    if (k3s_state)
        env.publish = [&node, &env](HealthReport& out) { publish_node(node, env.control, out); };
    return verdict(node.settings.health, env);
}

Result<K3sWait> wait_k3s_ready(const RootPrefix& root, const config::AgentSettings& settings,
                               std::chrono::milliseconds timeout,
                               std::chrono::milliseconds interval) {
    K3sWait out;
    const auto state = BALLAST_TRY(k3s::load_state(root));
    if (!state || state->role == k3s::Role::none) return out;
    out.set_up = true;
    health::Settings only_k3s;
    only_k3s.deadline = timeout;
    only_k3s.interval = interval;
    auto rep =
        health::assess(only_k3s, health::systemd_unit_state, {k3s_probe(root, *state, settings)});
    out.ready = rep.ok;
    out.seconds = rep.seconds;
    if (!rep.checks.empty()) out.detail = rep.checks.back().detail;
    return out;
}

}  // namespace ballast::ops
