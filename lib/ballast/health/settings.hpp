// Boot assessment settings (agent.yaml `health:`): what must hold, within `deadline`, for a slot
// on trial to be committed. Owned here, composed by config::AgentSettings.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace ballast::health {

struct Settings {
    std::vector<std::string> units;     // must be active
    std::vector<std::string> commands;  // must exit 0 (run by /bin/sh -c, as written)
    std::chrono::milliseconds deadline{std::chrono::minutes(5)};
    std::chrono::milliseconds interval{std::chrono::seconds(5)};  // between failed rounds
};

}  // namespace ballast::health
