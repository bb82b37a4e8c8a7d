#include "ballast/stages/runner.hpp"

#include <spdlog/spdlog.h>

#include "ballast/config/facts.hpp"
#include "ballast/config/loader.hpp"
#include "ballast/core/cmdline.hpp"
#include "ballast/stages/executor.hpp"

namespace ballast::stages {

nlohmann::json RunReport::to_json() const {
    auto j = result.to_json();
    auto diag_json = nlohmann::json::array();
    for (const auto& d : diags.items())
        diag_json.push_back(
            {{"severity", d.severity == config::Severity::error ? "error" : "warning"},
             {"file", d.pos.file},
             {"line", d.pos.line},
             {"column", d.pos.col},
             {"message", d.message}});
    j["diagnostics"] = diag_json;
    j["skipped_files"] = skipped_files;
    j["ok"] = ok();
    return j;
}

void apply_settings(RunRequest& req, const config::AgentSettings& s) {
    req.http.ca_file = s.http.ca_file;
    req.http.proxy = s.http.proxy;
    req.k3s_binary_url = s.k3s.binary_url;
    req.k3s_binary_sha256 = s.k3s.binary_sha256;
}

Status run_or_fail(const RunRequest& req) {
    auto rep = BALLAST_TRY_CTX(run(req), "{} stage", req.stage);
    if (!rep.ok())
        return fail(Errc::failed, "the {} stage failed: {}", req.stage, rep.result.summary());
    return {};
}

config::Config access_steps(const config::Config& cfg, const std::string& stage) {
    config::Config out;
    auto& list = out.stages[stage];
    for (std::string_view base : {"rootfs", "initramfs", "fs", "boot", "network"})
        for (std::string_view suffix : {".before", "", ".after"}) {
            auto it = cfg.stages.find(std::string(base) + std::string(suffix));
            if (it == cfg.stages.end()) continue;
            for (const auto& s : it->second) {
                if (s.hostname.empty() && s.users.empty() && s.authorized_keys.empty()) continue;
                config::Step a;
                a.pos = s.pos;
                a.stage = stage;
                a.id = s.id;
                a.name = s.name;
                a.node = s.node;
                a.only_os = s.only_os;
                a.only_os_version = s.only_os_version;
                a.only_arch = s.only_arch;
                a.only_service_manager = s.only_service_manager;
                a.if_files = s.if_files;
                a.hostname = s.hostname;
                a.users = s.users;
                a.authorized_keys = s.authorized_keys;
                list.push_back(std::move(a));
            }
        }
    return out;
}

Result<RunReport> run(const RunRequest& req) {
    BALLAST_TRY(check_stage_name(req.stage));
    using Clock = std::chrono::steady_clock;
    auto ms = [](Clock::time_point a, Clock::time_point b) {
        return std::chrono::duration<double, std::milli>(b - a).count();
    };
    const auto t0 = Clock::now();
    const RootPrefix& config_root = req.config_root ? *req.config_root : req.root;
    auto facts = BALLAST_TRY(config::gather_facts(config_root));
    const auto t1 = Clock::now();
    config::SourceOptions so;
    so.node_sources = req.node_sources;
    so.extra_files = req.config_files;
    if (req.root.is_host_root())
        if (auto cl = read_proc_cmdline()) so.cmdline = *cl;
    auto loaded = BALLAST_TRY(config::load_config(config_root, so, facts));
    spdlog::debug("facts in {:.2f} ms, config ({} files) loaded in {:.2f} ms", ms(t0, t1),
                  loaded.sources.size(), ms(t1, Clock::now()));
    for (const auto& d : loaded.diags.items()) {
        if (d.severity == config::Severity::error)
            spdlog::error("{}", d.text());
        else
            spdlog::warn("{}", d.text());
    }
    for (const auto& f : loaded.skipped_files)
        spdlog::error("{}: not applied because of the errors above", f);

    StageContext ctx;
    ctx.root = req.root;
    ctx.live = req.root.is_host_root();
    ctx.facts = std::move(facts);
    ctx.http = req.http;
    ctx.k3s_binary = {req.k3s_binary_url, req.k3s_binary_sha256};
    ctx.on_output = [](std::string_view step, std::string_view line, bool is_err) {
        if (is_err)
            spdlog::warn("{}: {}", step, line);
        else
            spdlog::info("{}: {}", step, line);
    };
    ctx.reload_config = [config_root, so, &ctx]() {
        return config::load_config(config_root, so, ctx.facts);
    };
    RunReport rep;
    rep.result = run_stage(req.access_only ? access_steps(loaded.config, req.stage) : loaded.config,
                           req.stage, ctx, req.dry_run);
    rep.diags = std::move(loaded.diags);
    rep.skipped_files = std::move(loaded.skipped_files);
    spdlog::info("{}", rep.result.summary());
    if (!req.dry_run)
        if (auto st = record_result(req.root, rep.result); !st)
            spdlog::warn("could not record the stage result: {}", st.error().what());
    return rep;
}

}  // namespace ballast::stages
