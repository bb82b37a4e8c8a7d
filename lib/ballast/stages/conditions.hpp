// The conditions a step runs under, in yip's order (node, if, only_os, only_os_version, only_arch,
// only_service_manager, if_files): each with the line the dry-run plan prints and the check the
// executor makes, so the two cannot drift apart.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "ballast/config/model.hpp"
#include "ballast/stages/context.hpp"

namespace ballast::stages {

struct Condition {
    std::string_view key;  // the step key
    bool (*set)(const config::Step&);
    std::string (*describe)(const config::Step&);
    // Why the step is skipped, or nullopt when the condition holds.
    std::optional<std::string> (*check)(const config::Step&, StageContext&);
};

[[nodiscard]] std::span<const Condition> conditions();

// The first condition that does not hold, as the reason the step is skipped.
[[nodiscard]] std::optional<std::string> skip_reason(const config::Step& s, StageContext& ctx);

}  // namespace ballast::stages
