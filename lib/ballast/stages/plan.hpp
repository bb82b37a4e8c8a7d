// Which steps a stage runs, in which order: NAME.before, NAME, NAME.after, with the Kairos event
// names due at that moment around them (config/stage_names.hpp); within each, file order, except
// that a step with `after:` waits for the steps it names (yip's ordering).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "ballast/config/model.hpp"

namespace ballast::stages {

struct Plan {
    std::vector<const config::Step*> steps;
    std::vector<std::string> errors;  // dependency cycles
};

[[nodiscard]] Plan plan_stage(const config::Config& cfg, std::string_view stage);

// Human lines describing what a step would do (for --dry-run).
[[nodiscard]] std::vector<std::string> describe_step(const config::Step& s);

}  // namespace ballast::stages
