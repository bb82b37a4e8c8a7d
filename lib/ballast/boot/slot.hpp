// The two A/B slots.
#pragma once

#include <optional>
#include <string_view>

#include "ballast/core/result.hpp"

namespace ballast::boot {

enum class Slot { A, B };

[[nodiscard]] constexpr Slot other(Slot s) noexcept {
    return s == Slot::A ? Slot::B : Slot::A;
}
[[nodiscard]] constexpr std::string_view name(Slot s) noexcept {
    return s == Slot::A ? "A" : "B";
}
// "A", "a", "B", "b".
[[nodiscard]] Result<Slot> parse_slot(std::string_view text);
// The slot the running system booted from, from `ballast.slot=` on a kernel command line.
[[nodiscard]] std::optional<Slot> booted_slot_from_cmdline(std::string_view cmdline);

}  // namespace ballast::boot
