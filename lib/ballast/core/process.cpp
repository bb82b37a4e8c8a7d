#include "ballast/core/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <map>

#include "ballast/core/fd.hpp"

extern char** environ;

namespace ballast {
namespace {

using Clock = std::chrono::steady_clock;

struct Pipe {
    UniqueFd read, write;
};

Result<Pipe> make_pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) < 0) return fail_errno(errno, "pipe");
    return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

std::vector<std::string> build_env(const ProcessOptions& o) {
    std::map<std::string, std::string> kv;  // ordered: stable child environment
    if (!o.clear_env)
        for (char** e = environ; e && *e; ++e) {
            std::string_view s(*e);
            auto eq = s.find('=');
            if (eq != std::string_view::npos) kv[std::string(s.substr(0, eq))] = std::string(s);
        }
    for (const auto& s : o.env) {
        auto eq = s.find('=');
        kv[s.substr(0, eq)] = s;
    }
    std::vector<std::string> out;
    out.reserve(kv.size());
    for (auto& [k, v] : kv)
        out.push_back(std::move(v));
    return out;
}

// Splits captured output into lines for on_line, keeping a partial tail per stream.
class LineSplitter {
  public:
    void feed(std::string_view data, bool is_stderr,
              const std::function<void(std::string_view, bool)>& cb) {
        auto& buf = is_stderr ? err_ : out_;
        buf.append(data);
        size_t start = 0, nl;
        while ((nl = buf.find('\n', start)) != std::string::npos) {
            cb(std::string_view(buf).substr(start, nl - start), is_stderr);
            start = nl + 1;
        }
        buf.erase(0, start);
    }
    void finish(const std::function<void(std::string_view, bool)>& cb) {
        if (!out_.empty()) cb(out_, false);
        if (!err_.empty()) cb(err_, true);
    }

  private:
    std::string out_, err_;
};

}  // namespace

std::string ProcessResult::describe() const {
    if (timed_out) return "timed out and was killed";
    if (signal != 0) return fmt::format("killed by signal {} ({})", signal, ::strsignal(signal));
    return fmt::format("exited with status {}", exit_code);
}

ProcessOptions shell_command(std::string script) {
    ProcessOptions o;
    o.argv = {"/bin/sh", "-c", std::move(script)};
    return o;
}

Result<Spawned> spawn_process(const ProcessOptions& o, SpawnIo io) {
    if (o.argv.empty() || o.argv[0].empty())
        return fail(Errc::invalid_argument, "run: empty argument vector");
    const std::string& prog = o.argv[0];

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    Spawned sp;
    Pipe in, out, err;
    auto wire = [&](Stdio how, int target, Pipe& p, bool child_reads) -> Status {
        if (how == Stdio::pipe) {
            p = BALLAST_TRY(make_pipe());
            posix_spawn_file_actions_adddup2(&fa, child_reads ? p.read.get() : p.write.get(),
                                             target);
        } else if (how == Stdio::null) {
            posix_spawn_file_actions_addopen(&fa, target, "/dev/null",
                                             child_reads ? O_RDONLY : O_WRONLY, 0);
        }
        return {};
    };
    if (auto st = wire(io.in, 0, in, true); !st) return std::unexpected(st.error());
    if (auto st = wire(io.out, 1, out, false); !st) return std::unexpected(st.error());
    if (auto st = wire(io.err, 2, err, false); !st) return std::unexpected(st.error());
    if (o.cwd) posix_spawn_file_actions_addchdir_np(&fa, o.cwd->c_str());

    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    // The daemon blocks SIGTERM/SIGINT/SIGCHLD for sd-event; children must not inherit that,
    // nor any ignored dispositions.
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(
        &attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);

    std::vector<char*> argv;
    for (const auto& a : o.argv)
        argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    auto env_storage = build_env(o);
    std::vector<char*> envp;
    for (auto& e : env_storage)
        envp.push_back(e.data());
    envp.push_back(nullptr);

    int rc = prog.find('/') == std::string::npos
                 ? ::posix_spawnp(&sp.pid, prog.c_str(), &fa, &attr, argv.data(), envp.data())
                 : ::posix_spawn(&sp.pid, prog.c_str(), &fa, &attr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) return fail_errno(rc, "run " + prog);
    sp.stdin_w = std::move(in.write);
    sp.stdout_r = std::move(out.read);
    sp.stderr_r = std::move(err.read);
    return sp;
}

namespace {

constexpr auto kNever = Clock::time_point::max();

// One child from spawn to reaping: feeds its stdin, captures its output, enforces the timeout
// (SIGTERM to the whole group, SIGKILL after the grace) and drains the pipes after it exits.
class Supervision {
  public:
    Supervision(const ProcessOptions& o, Spawned sp) : o_(o), sp_(std::move(sp)) {
        pending_input_ = o.input;
        if (pending_input_.empty())
            sp_.stdin_w.reset();
        else
            ::fcntl(sp_.stdin_w.get(), F_SETFL, O_NONBLOCK);
        if (o.timeout.count() > 0) timeout_at_ = Clock::now() + o.timeout;
    }

    [[nodiscard]] Result<ProcessResult> run() {
        pidfd_ = UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, sp_.pid, 0)));
        if (!pidfd_) return kill_and_fail(errno, "pidfd_open");
        // After exit a backgrounded grandchild may still hold the pipes open: drain them only
        // until the grace runs out.
        while (!exited_ || ((sp_.stdout_r || sp_.stderr_r) && Clock::now() < drain_until_))
            if (auto st = step(); !st) return std::unexpected(st.error());
        if (o_.on_line) lines_.finish(o_.on_line);
        return reap();
    }

  private:
    Result<ProcessResult> kill_and_fail(int e, std::string_view what) {
        ::kill(-sp_.pid, SIGKILL);
        ::waitpid(sp_.pid, nullptr, 0);
        return fail_errno(e, std::string(what));
    }

    // One poll round: wait for output, input room, exit or the next deadline; then act on it.
    [[nodiscard]] Status step() {
        std::array<pollfd, 4> pfd{};
        nfds_t n = 0;
        int idx_out = -1, idx_err = -1, idx_in = -1, idx_pid = -1;
        auto add = [&](const UniqueFd& fd, short events) {
            pfd[n] = {fd.get(), events, 0};
            return static_cast<int>(n++);
        };
        if (sp_.stdout_r) idx_out = add(sp_.stdout_r, POLLIN);
        if (sp_.stderr_r) idx_err = add(sp_.stderr_r, POLLIN);
        if (sp_.stdin_w) idx_in = add(sp_.stdin_w, POLLOUT);
        if (!exited_) idx_pid = add(pidfd_, POLLIN);
        if (::poll(pfd.data(), n, wait_ms()) < 0 && errno != EINTR) {
            auto r = kill_and_fail(errno, "poll");
            return std::unexpected(r.error());
        }
        const auto now = Clock::now();
        enforce_deadlines(now);
        if (idx_out >= 0) drain(pfd[idx_out], sp_.stdout_r, res_.out, false);
        if (idx_err >= 0) drain(pfd[idx_err], sp_.stderr_r, res_.err, true);
        if (idx_in >= 0 && (pfd[idx_in].revents & (POLLOUT | POLLERR | POLLHUP))) feed_input();
        if (idx_pid >= 0 && (pfd[idx_pid].revents & POLLIN)) {
            exited_ = true;
            drain_until_ = now + o_.kill_grace;
        }
        return {};
    }

    [[nodiscard]] int wait_ms() const {
        auto next = std::min({exited_ || res_.timed_out ? kNever : timeout_at_,
                              exited_ ? kNever : kill_at_, drain_until_});
        if (next == kNever) return -1;
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(next - Clock::now());
        return left.count() < 0 ? 0 : static_cast<int>(left.count()) + 1;
    }

    void enforce_deadlines(Clock::time_point now) {
        if (!exited_ && !res_.timed_out && now >= timeout_at_) {
            // Whole process group: a timed-out shell script must not leave orphans behind.
            ::kill(-sp_.pid, SIGTERM);
            res_.timed_out = true;
            kill_at_ = now + o_.kill_grace;
        } else if (!exited_ && now >= kill_at_) {
            ::kill(-sp_.pid, SIGKILL);
            kill_at_ = kNever;
        }
    }

    void drain(const pollfd& p, UniqueFd& fd, std::string& sink, bool is_err) {
        if (!(p.revents & (POLLIN | POLLHUP | POLLERR))) return;
        char buf[8192];
        ssize_t r = ::read(fd.get(), buf, sizeof buf);
        if (r < 0 && errno == EINTR) return;
        if (r <= 0) {
            fd.reset();
            return;
        }
        std::string_view chunk(buf, static_cast<size_t>(r));
        if (sink.size() < o_.max_capture)
            sink.append(chunk.substr(0, o_.max_capture - sink.size()));
        if (o_.on_line) lines_.feed(chunk, is_err, o_.on_line);
    }

    void feed_input() {
        auto& in = sp_.stdin_w;
        ssize_t w = ::write(in.get(), pending_input_.data(), pending_input_.size());
        if (w < 0 && errno != EAGAIN && errno != EINTR) in.reset();  // EPIPE: child gone
        if (w > 0) pending_input_.remove_prefix(static_cast<size_t>(w));
        if (pending_input_.empty()) in.reset();
    }

    [[nodiscard]] Result<ProcessResult> reap() {
        int status = 0;
        while (::waitpid(sp_.pid, &status, 0) < 0)
            if (errno != EINTR) return fail_errno(errno, "waitpid");
        if (WIFEXITED(status)) res_.exit_code = WEXITSTATUS(status);
        if (WIFSIGNALED(status)) res_.signal = WTERMSIG(status);
        return std::move(res_);
    }

    const ProcessOptions& o_;
    Spawned sp_;
    UniqueFd pidfd_;
    ProcessResult res_;
    LineSplitter lines_;
    std::string_view pending_input_;
    Clock::time_point timeout_at_ = kNever;
    Clock::time_point kill_at_ = kNever;      // SIGKILL follows an unanswered SIGTERM
    Clock::time_point drain_until_ = kNever;  // set when the child exits
    bool exited_ = false;
};

}  // namespace

Status run_checked(const ProcessOptions& opts, std::string_view what) {
    auto r = run_process(opts);
    if (!r) return std::unexpected(std::move(r.error()).context(std::string(what)));
    if (!r->success()) {
        std::string err = r->err.empty() ? r->out : r->err;
        while (!err.empty() && err.back() == '\n')
            err.pop_back();
        return fail(Errc::failed, "{}: {} {}: {}", what, opts.argv.empty() ? "" : opts.argv[0],
                    r->describe(), err);
    }
    return {};
}

Result<ProcessResult> run_process(const ProcessOptions& o) {
    auto sp = BALLAST_TRY(spawn_process(o));
    return Supervision(o, std::move(sp)).run();
}

}  // namespace ballast
