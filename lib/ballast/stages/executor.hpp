// Runs a stage: conditions, then every module of every step in yip's order. A failing step is
// reported and the others continue (yip's default); `strict: true` on a step stops its stage.
#pragma once

#include <string_view>

#include "ballast/config/model.hpp"
#include "ballast/stages/context.hpp"
#include "ballast/stages/result.hpp"

namespace ballast::stages {

// Runs `stage` (with .before and .after). With `dry_run` nothing is evaluated or changed: the
// result holds the plan.
[[nodiscard]] StageResult run_stage(const config::Config& cfg, std::string_view stage,
                                    StageContext& ctx, bool dry_run = false);

// Writes the result to /run/ballast/stages/<stage>.json under the root (what agentctl status
// shows), atomically.
[[nodiscard]] Status record_result(const RootPrefix& root, const StageResult& result);

}  // namespace ballast::stages
