// One stage run from a node's config sources: facts, load, run, record. Used by the daemon,
// `ballast-agent stage` and agentctl's in-process fallback.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "ballast/config/agent_settings.hpp"
#include "ballast/config/diagnostics.hpp"
#include "ballast/config/model.hpp"
#include "ballast/core/result.hpp"
#include "ballast/core/root.hpp"
#include "ballast/stages/names.hpp"
#include "ballast/stages/result.hpp"
#include "ballast/system/http.hpp"

namespace ballast::stages {

struct RunRequest {
    std::string stage;
    RootPrefix root;
    // Where the config sources and facts are read, when not `root`: the initramfs's `rootfs`
    // stage acts on the initramfs ("/", not chrooted) with the slot's config (/sysroot).
    std::optional<RootPrefix> config_root;
    std::vector<std::string> config_files;  // --config, after the node's sources
    bool node_sources = true;
    // A recovery boot (ops/mount.hpp): of every boot stage (rootfs to network), only what gives
    // a person a way in runs (the host name, users and their SSH keys), as stage `stage`.
    // Nothing else of the config runs: not its commands, files or k3s.
    bool access_only = false;
    bool dry_run = false;
    http::Options http;
    std::string k3s_binary_url, k3s_binary_sha256;  // agent.yaml k3s:
};

struct RunReport {
    StageResult result;
    config::Diagnostics diags;               // from loading the config
    std::vector<std::string> skipped_files;  // files not applied because of errors
    [[nodiscard]] bool ok() const { return !result.failed() && !diags.has_errors(); }
    [[nodiscard]] nlohmann::json to_json() const;
};

[[nodiscard]] Result<RunReport> run(const RunRequest& req);

// The steps access_only runs, as stage `stage`: each boot-stage step with its host name, users
// and SSH keys and nothing else, in boot order; steps left with nothing are dropped, and so are
// `after` references (the steps they named may be gone). Conditions stay, but `if:` (a shell
// command) goes: no command of the config runs in recovery.
[[nodiscard]] config::Config access_steps(const config::Config& cfg, const std::string& stage);

// run(), where a failed step or a config error is an error too: "the <stage> stage failed: ...".
// For callers that stop on a failed stage (install, upgrade) and report nothing else of it.
[[nodiscard]] Status run_or_fail(const RunRequest& req);

// What agent.yaml says about stage runs (https CA and proxy, the k3s artifact), into `req`.
void apply_settings(RunRequest& req, const config::AgentSettings& s);

}  // namespace ballast::stages
