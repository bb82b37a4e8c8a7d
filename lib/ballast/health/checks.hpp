// Boot assessment: the checks that gate committing a slot on trial (agent.yaml `health:`).
// A round runs every check once; assess() repeats rounds until one passes or the deadline is
// reached. Units are asked through `UnitState` (systemd's D-Bus API on a node) so the logic can be
// pointed at anything; commands run as the operator wrote them, under /bin/sh -c.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ballast/core/result.hpp"
#include "ballast/health/settings.hpp"

namespace ballast::health {

struct CheckResult {
    std::string name;  // "unit k3s.service", "command curl -fsS localhost:6443/readyz"
    bool ok = false;
    std::string detail;  // why not (the unit's state, the command's status and stderr)
};

struct Report {
    bool ok = false;
    int rounds = 0;
    double seconds = 0;
    std::vector<CheckResult> checks;  // of the last round
    // "all 3 checks passed" or "unit k3s.service is failed; command ... exited with status 1".
    [[nodiscard]] std::string summary() const;
    [[nodiscard]] nlohmann::json to_json() const;
};

// The active state of a unit ("active", "failed", ...), or an error when it cannot be asked.
using UnitState = std::function<Result<std::string>(const std::string& unit)>;

// A check that is not in agent.yaml (k3s readiness when this node runs k3s).
using Probe = std::function<CheckResult(std::chrono::milliseconds time_left)>;

[[nodiscard]] std::vector<CheckResult> run_round(const health::Settings& h,
                                                 const UnitState& unit_state,
                                                 std::chrono::milliseconds time_left,
                                                 const std::vector<Probe>& probes = {});

[[nodiscard]] Report assess(const health::Settings& h, const UnitState& unit_state,
                            const std::vector<Probe>& probes = {});

// systemd's view of a unit; an error when systemd is not running here.
[[nodiscard]] Result<std::string> systemd_unit_state(const std::string& unit);

}  // namespace ballast::health
