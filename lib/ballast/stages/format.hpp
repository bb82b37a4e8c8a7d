// Human text for a stage run report (the JSON of RunReport), for agentctl and ballast-agent.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace ballast::stages {

[[nodiscard]] std::string format_report(const nlohmann::json& report, bool verbose);

}  // namespace ballast::stages
