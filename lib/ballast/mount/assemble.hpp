// Carries out a mount plan (layout.hpp) with mount(2). Boot must go on: a step that fails is
// reported and the others still run, and when the persistent device cannot be mounted a tmpfs
// takes its place, so the node comes up, reachable and saying why, instead of hanging in the
// initramfs. Nothing here formats, repairs beyond `e2fsck -p`, or deletes data.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ballast/mount/layout.hpp"

namespace ballast::mount {

struct Outcome {
    Step step;
    enum class State { done, skipped, failed } state = State::done;
    std::string detail;  // what happened beyond the plan ("first boot: seeded from the image")
};

struct Report {
    std::vector<Outcome> steps;
    bool persistent = false;  // the persistent device is mounted (not the tmpfs stand-in)
    [[nodiscard]] bool ok() const;
    [[nodiscard]] std::vector<std::string> errors() const;
    [[nodiscard]] nlohmann::json to_json() const;
};

// Makes the mounts of one phase (Step::Phase) and adds them to `report`. The storage phase is
// refused when its first target (the persistent mount) is a mount point already: the root was
// assembled in this boot.
[[nodiscard]] Status assemble(const std::vector<Step>& steps, Step::Phase phase, Report& report);

}  // namespace ballast::mount
