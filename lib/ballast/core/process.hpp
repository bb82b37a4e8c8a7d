// Runs external programs from an argument vector. Never through a shell unless the caller asks
// for one explicitly with shell_command() (user-written `commands` steps are the only case).
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sys/types.h>

#include "ballast/core/fd.hpp"
#include "ballast/core/result.hpp"

namespace ballast {

struct ProcessOptions {
    std::vector<std::string> argv;  // argv[0] is looked up in PATH when it has no '/'
    // Environment: inherited from this process unless `clear_env`; `env` entries are added or
    // replace inherited ones ("KEY=VALUE").
    bool clear_env = false;
    std::vector<std::string> env;
    std::optional<std::string> cwd;
    std::string input;                           // written to stdin, then stdin is closed
    std::chrono::milliseconds timeout{0};        // 0: no limit
    std::chrono::milliseconds kill_grace{2000};  // SIGTERM -> wait this long -> SIGKILL
    size_t max_capture = 16u << 20;              // per stream; the rest is dropped
    // Called for every complete output line (and a last partial one), as it arrives.
    std::function<void(std::string_view line, bool is_stderr)> on_line;
};

struct ProcessResult {
    int exit_code = -1;  // valid when signal == 0
    int signal = 0;      // terminating signal, 0 if the program exited
    bool timed_out = false;
    std::string out;
    std::string err;

    [[nodiscard]] bool success() const noexcept {
        return !timed_out && signal == 0 && exit_code == 0;
    }
    // "exited with status 3", "killed by signal 9 (Killed)", "timed out after ..."
    [[nodiscard]] std::string describe() const;
};

// Runs to completion. Fails only when the program could not be started or waited for; a
// non-zero exit is a successful run with exit_code set. The child gets its own process group
// (so a timeout kills the whole tree), an empty signal mask and default signal dispositions.
[[nodiscard]] Result<ProcessResult> run_process(const ProcessOptions& opts);

// Runs to completion and turns anything but exit status 0 into an error naming `what`, the
// program, how it ended and what it printed (stderr, else stdout).
[[nodiscard]] Status run_checked(const ProcessOptions& opts, std::string_view what);

// A started child whose streams the caller handles itself (the daemon's job runner).
struct Spawned {
    pid_t pid = -1;
    UniqueFd stdin_w, stdout_r, stderr_r;  // empty unless Stdio::pipe
};
enum class Stdio { pipe, inherit, null };
struct SpawnIo {
    Stdio in = Stdio::pipe, out = Stdio::pipe, err = Stdio::pipe;
};
// Starts argv as run_process does (own process group, clean signal state) and returns at once.
[[nodiscard]] Result<Spawned> spawn_process(const ProcessOptions& opts, SpawnIo io = {});

// Options for `/bin/sh -c script`: only for scripts a user wrote on purpose.
[[nodiscard]] ProcessOptions shell_command(std::string script);

}  // namespace ballast
