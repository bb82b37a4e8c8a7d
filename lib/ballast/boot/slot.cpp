#include "ballast/boot/slot.hpp"

#include "ballast/core/cmdline.hpp"

namespace ballast::boot {

Result<Slot> parse_slot(std::string_view text) {
    if (text == "A" || text == "a") return Slot::A;
    if (text == "B" || text == "b") return Slot::B;
    return fail(Errc::invalid_argument, "invalid slot '{}' (expected A or B)", text);
}

std::optional<Slot> booted_slot_from_cmdline(std::string_view cmdline) {
    auto v = cmdline_value(cmdline, "ballast.slot");
    if (!v) return std::nullopt;
    auto s = parse_slot(*v);
    return s ? std::optional<Slot>(*s) : std::nullopt;
}

}  // namespace ballast::boot
