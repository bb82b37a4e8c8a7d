#include "ballast/ops/upgrade.hpp"

#include <spdlog/spdlog.h>

#include "ballast/core/json.hpp"
#include "ballast/core/text.hpp"
#include "ballast/crypt/slot_keys.hpp"
#include "ballast/stages/runner.hpp"
#include "ballast/system/http.hpp"

namespace ballast::ops {

Status check_source(const std::string& source) {
    if (!update::is_url(source) && !is_absolute_path(source))
        return fail(Errc::invalid_argument,
                    "source '{}': expected an absolute path, an https:// URL or an "
                    "oci://REGISTRY/REPO:TAG reference",
                    source);
    return {};
}

Result<update::UpgradeResult> upgrade(const Node& node, const update::UpgradeRequest& req,
                                      const update::UpgradeProgress& progress) {
    if (node.disk.empty()) return fail(Errc::unavailable, "no Ballast disk found");
    auto db = BALLAST_TRY(node.open_boot());
    update::UpgradeEnv env;
    env.control = &db.control();
    env.slots = db.slots();
    env.booted = node.booted;
    env.state_dir = node.state_dir;
    env.source = source_options(node.options, node.settings);
    env.compatible = update::node_compatible(node.settings.update.compatible, node.options.root);
    env.tries = int(node.settings.update.tries);
    env.run_stage = [root = node.options.root, http = env.source.http](const std::string& stage) {
        stages::RunRequest r;
        r.stage = stage;
        r.root = root;
        r.http = http;
        return stages::run_or_fail(r);
    };
    env.key_hook = [&node]() -> Status {
        auto keys = BALLAST_TRY(crypt::key_policy(node.settings.tpm));
        if (!keys) return {};  // nothing encrypted
        spdlog::info("{}", BALLAST_TRY(crypt::prepare_next_boot(*keys)));
        return {};
    };
    return update::upgrade(req, env, progress);
}

UpgradeReport UpgradeReport::from_json(const nlohmann::json& report) {
    UpgradeReport r;
    r.ok = json_field<bool>(report, "ok", false);
    if (!r.ok) {
        r.error = json_field<std::string>(report, "error", "(not a string)");
        return r;
    }
    r.result.already = json_field<bool>(report, "already", false);
    r.result.version = json_field<std::string>(report, "version", "");
    r.result.from_version = json_field<std::string>(report, "from_version", "");
    r.result.where = json_field<std::string>(report, "source", "");
    if (auto t = boot::parse_slot(json_field<std::string>(report, "target", "")))
        r.result.target = *t;
    r.result.bytes = json_field<uint64_t>(report, "bytes", 0);
    r.result.downloaded = json_field<uint64_t>(report, "downloaded", 0);
    r.result.seconds = json_field<double>(report, "seconds", 0.0);
    r.result.dry_run = json_field<bool>(report, "dry_run", false);
    if (auto p = report.find("plan"); p != report.end() && p->is_object()) {
        auto& plan = r.result.plan;
        plan.image = r.result.bytes;
        plan.delta = json_field<bool>(*p, "delta", false);
        plan.fetch = json_field<uint64_t>(*p, "fetch", 0);
        plan.requests = json_field<uint64_t>(*p, "requests", 0);
        plan.copy = json_field<uint64_t>(*p, "copy", 0);
        plan.in_place = json_field<uint64_t>(*p, "in_place", 0);
        plan.why = json_field<std::string>(*p, "why", "");
    }
    return r;
}

std::string UpgradeReport::message() const {
    // LastError and the signal are for everyone: no credentials from a URL.
    if (!ok) return http::redact("upgrade: " + error);
    if (result.already)
        return http::redact(
            fmt::format("already running {} (slot {})", result.version, boot::name(result.target)));
    if (result.dry_run)
        return http::redact(fmt::format("dry run: would upgrade from {} to {} in slot {}: {}",
                                        result.from_version, result.version,
                                        boot::name(result.target), update::describe(result.plan)));
    std::string text =
        fmt::format("upgraded to {} in slot {}", result.version, boot::name(result.target));
    if (result.downloaded > 0 && result.downloaded < result.bytes)
        text += fmt::format(" ({} of {} bytes downloaded)", result.downloaded, result.bytes);
    return http::redact(text);
}

}  // namespace ballast::ops
