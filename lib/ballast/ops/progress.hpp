// An upgrade's progress, with no I/O and no clock of its own (callers pass the time): the line
// the job prints for a step, which steps are worth a line, and the rate and time left the daemon
// publishes from those lines.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace ballast::ops {

using Clock = std::chrono::steady_clock;

// One step as the job reports it: {"progress": {"phase", "done", "total"}} on its stdout.
struct ProgressLine {
    std::string phase;  // "checking", "writing", "verifying", "activating"
    uint64_t done = 0, total = 0;
    [[nodiscard]] nlohmann::json to_json() const;
    // The "progress" member's value; wrong types read as empty, never throw.
    [[nodiscard]] static ProgressLine from_json(const nlohmann::json& j);
};

// At most one line per percent and per 200 ms within a phase; always the first of a phase and
// the last of one (done == total).
class ProgressThrottle {
  public:
    [[nodiscard]] bool take(const ProgressLine& p, Clock::time_point now);
    [[nodiscard]] bool new_phase() const { return new_phase_; }  // of the last take()
    [[nodiscard]] int percent() const { return last_pct_; }

  private:
    std::string last_phase_;
    int last_pct_ = -1;
    Clock::time_point last_t_{};
    bool new_phase_ = false;
};

// The daemon's Progress property: Phase, Percent, Bytes, Total, Rate (B/s), EtaSeconds.
struct ProgressSample {
    std::string phase;
    double percent = 0;
    uint64_t bytes = 0, total = 0;
    double rate = 0;  // bytes/s since the phase began; 0 until it means something
    double eta = -1;  // seconds; -1 unknown
    [[nodiscard]] nlohmann::json to_json() const;
    // What the property holds between the job's start and its first line.
    [[nodiscard]] static ProgressSample starting();
};

// The rate of a phase is measured from its first line; before 200 ms it would be noise.
class ProgressMeter {
  public:
    [[nodiscard]] ProgressSample update(const ProgressLine& p, Clock::time_point now);

  private:
    std::string phase_;
    Clock::time_point t0_{};
    uint64_t bytes0_ = 0;
};

}  // namespace ballast::ops
