// One mutating job at a time, off the event loop: the work runs on a worker thread, its result
// comes back to the loop (eventfd) where `done` runs, so D-Bus replies and the watchdog keep
// flowing while a stage or an upgrade takes minutes.
#pragma once

#include <systemd/sd-event.h>

#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "ballast/core/fd.hpp"
#include "ballast/core/result.hpp"
#include "ballast/system/sdbus.hpp"

namespace ballast::agent {

class JobRunner {
  public:
    using Work = std::function<nlohmann::json()>;
    using Done = std::function<void(const nlohmann::json&)>;

    // `on_change` runs on the loop thread when a job starts or ends.
    [[nodiscard]] Status attach(sd_event* event, std::function<void()> on_change);
    ~JobRunner();

    // Errc::busy when a job runs.
    [[nodiscard]] Status start(std::string operation, Work work, Done done);
    [[nodiscard]] bool busy() const { return !operation_.empty(); }
    [[nodiscard]] const std::string& operation() const { return operation_; }

  private:
    static int on_event(sd_event_source*, int fd, uint32_t, void* userdata);
    void finish();

    UniqueFd efd_;
    sdbus::EventSource source_;
    std::function<void()> on_change_;
    std::string operation_;
    Done done_;
    std::thread worker_;
    std::mutex mu_;
    nlohmann::json result_;
};

}  // namespace ballast::agent
