// What a stage run acts on and how: the node root, whether it is the running system, facts,
// and the result of every module.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "ballast/config/loader.hpp"
#include "ballast/config/model.hpp"
#include "ballast/core/process.hpp"
#include "ballast/core/result.hpp"
#include "ballast/core/root.hpp"
#include "ballast/system/http.hpp"

namespace ballast::stages {

struct StageContext {
    RootPrefix root;
    // The root is the running system: also apply to the kernel (sysctl, hostname, modules) and
    // to systemd. False for images and test folders.
    bool live = false;
    nlohmann::json facts;  // as config/facts gathers them
    http::Options http;
    // agent.yaml k3s.binary_url / binary_sha256: where the k3s binary comes from when the
    // image has none (or another version is wanted).
    struct Artifact {
        std::string url, sha256;
    } k3s_binary;
    // Each line of command output, as it arrives.
    std::function<void(std::string_view step_id, std::string_view line, bool is_stderr)> on_output;
    // The config again, from the sources this stage read (a datasource step that stored new
    // documents applies them at once). Unset: no reload.
    std::function<Result<config::Loaded>()> reload_config;
    // A step of this run stored new config sources: the built-in steps that follow (network,
    // k3s) take the config again, so they do not undo what those sources applied.
    bool sources_changed = false;
};

// What one module did in one step.
struct ModuleResult {
    std::vector<std::string> changes;  // "wrote /etc/motd"
    std::vector<std::string> errors;   // "/etc/x: Permission denied"
    std::vector<std::string> notes;    // "2 commands ran", "skipped: not the running system"
    void change(std::string s) { changes.push_back(std::move(s)); }
    void error(std::string s) { errors.push_back(std::move(s)); }
    void note(std::string s) { notes.push_back(std::move(s)); }
    // Records a failed Status as an error; true when it succeeded.
    bool check(const Status& st) {
        if (!st) error(st.error().what());
        return st.has_value();
    }
};

// Node-side names to ids ("root", "1000"), from the node's own /etc/passwd and /etc/group.
struct ResolvedOwner {
    std::optional<uid_t> uid;
    std::optional<gid_t> gid;
};
// Resolves names for one module run, reading the databases once, on the first name.
class OwnerResolver {
  public:
    explicit OwnerResolver(const RootPrefix& root);
    ~OwnerResolver();
    [[nodiscard]] Result<ResolvedOwner> resolve(const config::OwnerRef& owner,
                                                const config::OwnerRef& group);

  private:
    const RootPrefix& root_;
    struct Cache;
    std::unique_ptr<Cache> cache_;
};

// Runs a shell command as the node would: `sh -c` inside the root (chroot when the root is not
// "/"), with extra environment and a timeout.
struct ShellOptions {
    std::vector<std::string> env;
    std::chrono::seconds timeout{0};
    std::string step_id;  // for on_output
};
// Same for an argument vector, without a shell.
[[nodiscard]] Result<ProcessResult> run_argv(const StageContext& ctx, std::vector<std::string> argv,
                                             const ShellOptions& opts);
[[nodiscard]] Result<ProcessResult> run_shell(const StageContext& ctx, const std::string& script,
                                              const ShellOptions& opts);

}  // namespace ballast::stages
