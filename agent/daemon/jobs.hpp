// One mutating job at a time, in a child process (ballast-agent in a one-shot mode): the event
// loop stays free for D-Bus and the watchdog, a crash in a job cannot take the daemon down, and
// what the job allocated goes back to the system when it exits. The child's stdout is its
// report (JSON); its stderr is the daemon's (the journal).
#pragma once

#include <systemd/sd-event.h>

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ballast/core/fd.hpp"
#include "ballast/core/result.hpp"
#include "ballast/system/sdbus.hpp"

namespace ballast::agent {

// Set in a job's environment to the daemon's pid.
inline constexpr const char* kJobParentEnv = "BALLAST_JOB_PARENT";

class JobRunner {
  public:
    // `report` is the child's last stdout line parsed as JSON (null when there was none);
    // `exit_status` is its exit code, or 128+signal.
    using Done = std::function<void(const nlohmann::json& report, int exit_status)>;
    // Each stdout line that is a JSON object with a "progress" member, as it arrives.
    using Progress = std::function<void(const nlohmann::json& progress)>;

    // `on_change` runs on the loop thread when a job starts or ends.
    [[nodiscard]] Status attach(sd_event* event, std::function<void()> on_change);
    ~JobRunner();

    // Errc::busy when a job runs.
    [[nodiscard]] Status start(std::string operation, std::vector<std::string> argv, Done done,
                               Progress progress = {});
    [[nodiscard]] bool busy() const { return !operation_.empty(); }
    [[nodiscard]] const std::string& operation() const { return operation_; }

  private:
    static int on_output(sd_event_source*, int fd, uint32_t revents, void* userdata);
    static int on_exit(sd_event_source*, const siginfo_t* si, void* userdata);
    void maybe_finish();

    sd_event* event_ = nullptr;
    std::function<void()> on_change_;
    std::string operation_;
    Done done_;
    Progress progress_;
    size_t scanned_ = 0;  // output_ up to here was looked at for progress lines
    pid_t pid_ = -1;
    UniqueFd out_;
    sdbus::EventSource out_source_, child_source_;
    std::string output_;
    bool exited_ = false;
    int exit_status_ = 0;
};

}  // namespace ballast::agent
