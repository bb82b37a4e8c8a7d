// The names under `stages:` and when each runs: Ballast's own lifecycle stages (yip's and Kairos'
// names), the Kairos event names that run at one of Ballast's moments, the Kairos names with no
// equivalent here (they never run, and loading says why), and custom names (run when asked).
// One table, read by the decoder (warnings) and by the stage planner (what a run includes).
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ballast/config/model.hpp"

namespace ballast::config {

enum class StageClass {
    own,     // rootfs, boot, after-install, k3s-ready, ...
    alias,   // a Kairos event name that runs with one of Ballast's stages
    never,   // a Kairos name with no moment here
    custom,  // anything else: runs only when asked for by name
};

struct StageName {
    StageClass cls = StageClass::custom;
    std::string base;  // the key without its .before / .after substage
    std::string note;  // alias: when it runs; never: why not
};

[[nodiscard]] StageName classify_stage(std::string_view key);

// Ballast's own stage names, in lifecycle order.
[[nodiscard]] std::span<const std::string_view> own_stages();

// Does the config set k3s up (the built-in k3s step of the boot and reconcile stages)?
[[nodiscard]] bool wants_k3s(const Config& cfg);

// The `stages:` keys one run of `stage` takes its steps from, in order: Kairos event names due
// before it, the stage itself, those due after it, each as NAME.before, NAME, NAME.after.
// provider-kairos.bootstrap.<before|after>.<role> names come from the config's keys, roles in
// name order.
[[nodiscard]] std::vector<std::string> stage_run_order(std::string_view stage, const Config& cfg);

}  // namespace ballast::config
