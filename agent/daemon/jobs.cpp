#include "jobs.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include <spdlog/spdlog.h>

#include "ballast/core/process.hpp"
#include "guard.hpp"

namespace ballast::agent {

Status JobRunner::attach(sd_event* event, std::function<void()> on_change) {
    event_ = event;
    on_change_ = std::move(on_change);
    return {};
}

JobRunner::~JobRunner() {
    // The daemon is stopping: a running job is asked to stop too (its journal or state lets
    // the next start pick up) and reaped.
    if (pid_ > 0 && !exited_) {
        ::kill(-pid_, SIGTERM);
        ::waitpid(pid_, nullptr, 0);
    }
}

Status JobRunner::start(std::string operation, std::vector<std::string> argv, Done done,
                        Progress progress) {
    if (busy())
        return fail(Errc::busy, "busy: '{}' is running; try again when it has finished",
                    operation_);
    ProcessOptions p;
    p.argv = std::move(argv);
    // The job dies with the daemon (main.cpp): a restarted daemon resumes the work, and two
    // writers must never share a slot.
    p.env.push_back(fmt::format("{}={}", kJobParentEnv, ::getpid()));
    auto sp = BALLAST_TRY(spawn_process(p, {Stdio::null, Stdio::pipe, Stdio::inherit}));
    pid_ = sp.pid;
    out_ = std::move(sp.stdout_r);
    output_.clear();
    scanned_ = 0;
    exited_ = false;
    sd_event_source* s = nullptr;
    int r = sd_event_add_io(event_, &s, out_.get(), EPOLLIN, on_output, this);
    if (r < 0) return fail_errno(r, "job output");
    out_source_.reset(s);
    r = sd_event_add_child(event_, &s, pid_, WEXITED, on_exit, this);
    if (r < 0) return fail_errno(r, "job process");
    child_source_.reset(s);
    operation_ = std::move(operation);
    done_ = std::move(done);
    progress_ = std::move(progress);
    spdlog::debug("job '{}' started as pid {}", operation_, pid_);
    if (on_change_) on_change_();
    return {};
}

int JobRunner::on_output(sd_event_source*, int fd, uint32_t, void* userdata) {
    auto* self = static_cast<JobRunner*>(userdata);
    char buf[16384];
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
        // Reports are small; a runaway child cannot make the daemon hold more than 16 MiB.
        if (self->output_.size() < (16u << 20)) self->output_.append(buf, size_t(n));
        for (size_t nl; (nl = self->output_.find('\n', self->scanned_)) != std::string::npos;) {
            std::string_view line(self->output_.data() + self->scanned_, nl - self->scanned_);
            self->scanned_ = nl + 1;
            if (!self->progress_ || line.find("\"progress\"") == std::string_view::npos) continue;
            auto j = nlohmann::json::parse(line, nullptr, false);
            if (j.is_object() && j.contains("progress"))
                run_guarded("job progress", [&] { self->progress_(j["progress"]); });
        }
        return 0;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
    self->out_source_.reset();
    self->out_.reset();
    self->maybe_finish();
    return 0;
}

int JobRunner::on_exit(sd_event_source*, const siginfo_t* si, void* userdata) {
    auto* self = static_cast<JobRunner*>(userdata);
    self->exited_ = true;
    self->exit_status_ = si->si_code == CLD_EXITED ? si->si_status : 128 + si->si_status;
    self->child_source_.reset();
    self->maybe_finish();
    return 0;
}

void JobRunner::maybe_finish() {
    if (!exited_ || out_) return;
    nlohmann::json report;
    // The report is the last non-empty line (a pretty-printed document is one JSON value too).
    auto j = nlohmann::json::parse(output_, nullptr, false);
    if (!j.is_discarded()) {
        report = std::move(j);
    } else {
        auto end = output_.find_last_not_of("\n");
        auto start = end == std::string::npos ? std::string::npos : output_.rfind('\n', end);
        if (end != std::string::npos) {
            auto line = nlohmann::json::parse(
                output_.substr(start == std::string::npos ? 0 : start + 1), nullptr, false);
            if (!line.is_discarded()) report = std::move(line);
        }
    }
    auto done = std::move(done_);
    progress_ = nullptr;
    pid_ = -1;
    operation_.clear();
    if (done) run_guarded("job report", [&] { done(report, exit_status_); });
    if (on_change_) on_change_();
}

}  // namespace ballast::agent
