// Results of a stage run: per step, what changed, what failed, and how long it took.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ballast::stages {

enum class StepStatus { changed, unchanged, skipped, failed, not_run };
[[nodiscard]] std::string_view to_string(StepStatus s);

struct StepResult {
    std::string id, name, stage, source;  // source: "file:line"
    StepStatus status = StepStatus::unchanged;
    std::string reason;  // why skipped / not run
    std::vector<std::string> changes, errors, notes;
    std::chrono::microseconds duration{0};
};

struct StageResult {
    std::string stage;
    bool dry_run = false;
    std::vector<StepResult> steps;
    std::vector<std::string> plan;  // dry run: what would be done
    std::string started_at;         // ISO 8601, UTC
    std::chrono::microseconds duration{0};

    [[nodiscard]] size_t count(StepStatus s) const;
    [[nodiscard]] bool failed() const { return count(StepStatus::failed) > 0; }
    [[nodiscard]] nlohmann::json to_json() const;
    // One line: "boot: 5 steps, 2 changed, 3 unchanged, 0 failed in 12 ms".
    [[nodiscard]] std::string summary() const;
};

}  // namespace ballast::stages
