// The step modules in yip's run order: the step keys each acts on, what it does, and the lines
// the dry-run plan prints for it. The executor and the plan both walk this one table; a unit test
// holds it against the decoder's step keys.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ballast/config/model.hpp"
#include "ballast/stages/context.hpp"

namespace ballast::stages {

struct StepModule {
    std::vector<std::string_view> keys;  // the first names the module
    void (*apply)(const config::Step&, StageContext&, ModuleResult&);
    void (*describe)(const config::Step&, std::vector<std::string>&);
};

[[nodiscard]] std::span<const StepModule> step_modules();

// Step keys that belong to the step itself, not to a module or a condition.
inline constexpr std::string_view kStepOwnKeys[] = {"name", "after", "strict"};

}  // namespace ballast::stages
