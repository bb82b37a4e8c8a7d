// Stage names, checked where they enter (D-Bus, command line) and used in file names.
#pragma once

#include <string>

#include "ballast/core/result.hpp"

namespace ballast::stages {

// Letters, digits, '.', '_', '-'; not starting with '.'; at most 64 characters.
[[nodiscard]] Status check_stage_name(const std::string& stage);

}  // namespace ballast::stages
