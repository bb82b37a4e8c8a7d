// The contract between a job (ballast-agent in a one-shot mode) and the daemon: the job's last
// stdout line is its report, a JSON object with "ok"; a failure is {"ok": false, "error": ...}
// plus what the operation knew before it failed. Each operation's typed report has to_json() and
// from_json() beside it in ops/; this is the part they share.
#pragma once

#include <string_view>

#include <nlohmann/json.hpp>

#include "ballast/core/result.hpp"

namespace ballast::ops {

[[nodiscard]] nlohmann::json failure_report(const Error& e, nlohmann::json extra = {});

// The job's report (an object with "ok"); when it printed none (it crashed, or was killed), a
// failure report saying that `job` ("the stage job") ended with `exit_status` and no report.
[[nodiscard]] nlohmann::json job_report(const nlohmann::json& report, int exit_status,
                                        std::string_view job, nlohmann::json extra = {});

}  // namespace ballast::ops
