#include "ballast/stages/result.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace ballast::stages {

std::string_view to_string(StepStatus s) {
    switch (s) {
        case StepStatus::changed:
            return "changed";
        case StepStatus::unchanged:
            return "unchanged";
        case StepStatus::skipped:
            return "skipped";
        case StepStatus::failed:
            return "failed";
        case StepStatus::not_run:
            return "not-run";
    }
    return "unchanged";
}

size_t StageResult::count(StepStatus s) const {
    return size_t(
        std::count_if(steps.begin(), steps.end(), [s](const auto& r) { return r.status == s; }));
}

nlohmann::json StageResult::to_json() const {
    auto steps_json = nlohmann::json::array();
    for (const auto& s : steps) {
        steps_json.push_back({{"id", s.id},
                              {"name", s.name},
                              {"stage", s.stage},
                              {"source", s.source},
                              {"status", to_string(s.status)},
                              {"reason", s.reason},
                              {"changes", s.changes},
                              {"errors", s.errors},
                              {"notes", s.notes},
                              {"duration_ms", double(s.duration.count()) / 1000.0}});
    }
    return {{"stage", stage},
            {"dry_run", dry_run},
            {"started_at", started_at},
            {"duration_ms", double(duration.count()) / 1000.0},
            {"changed", count(StepStatus::changed)},
            {"unchanged", count(StepStatus::unchanged)},
            {"skipped", count(StepStatus::skipped)},
            {"failed", count(StepStatus::failed)},
            {"not_run", count(StepStatus::not_run)},
            {"plan", plan},
            {"steps", steps_json}};
}

std::string StageResult::summary() const {
    if (dry_run)
        return fmt::format("{}: dry run, {} steps planned, nothing changed", stage, steps.size());
    std::string s =
        fmt::format("{}: {} steps, {} changed, {} unchanged, {} skipped, {} failed", stage,
                    steps.size(), count(StepStatus::changed), count(StepStatus::unchanged),
                    count(StepStatus::skipped), count(StepStatus::failed));
    if (auto n = count(StepStatus::not_run)) s += fmt::format(", {} not run", n);
    return s + fmt::format(" in {:.1f} ms", double(duration.count()) / 1000.0);
}

}  // namespace ballast::stages
