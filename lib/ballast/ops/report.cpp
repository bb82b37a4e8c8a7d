#include "ballast/ops/report.hpp"

#include <fmt/format.h>

namespace ballast::ops {

nlohmann::json failure_report(const Error& e, nlohmann::json extra) {
    nlohmann::json j = {{"ok", false}, {"error", e.what()}};
    if (extra.is_object()) j.update(extra);
    return j;
}

nlohmann::json job_report(const nlohmann::json& report, int exit_status, std::string_view job,
                          nlohmann::json extra) {
    // A progress line is the last one printed by a job that was killed while writing.
    if (report.is_object() && report.contains("ok")) return report;
    return failure_report(
        Error(Errc::failed, fmt::format("{} ended with status {} and no report", job, exit_status)),
        std::move(extra));
}

}  // namespace ballast::ops
