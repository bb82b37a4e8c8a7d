// The seam between the A/B logic and a bootloader. The state machine (state.hpp) decides every
// transition; a backend only loads the state and stores it, each store one crash-safe write.
// GRUB (grub.hpp) is the first backend; upgrade, install, health and the operator's actions take
// a BootControl&, so a second backend (systemd-boot) plugs in without touching them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "ballast/boot/state.hpp"
#include "ballast/core/result.hpp"

namespace ballast::boot {

class BootControl {
  public:
    virtual ~BootControl() = default;
    // The backend's name for messages and status: "grub".
    [[nodiscard]] virtual std::string_view backend() const = 0;
    // The current state. With `repair`, a half-finished store is repaired; status readers pass
    // false and only look. Errc::parse when nothing usable is stored.
    [[nodiscard]] virtual Result<BootState> load(bool repair = true) = 0;
    // Stores `s`. A cut at any point leaves load() returning the old state or the new one.
    [[nodiscard]] virtual Status save(const BootState& s) = 0;
    // Writes `s` from scratch, whatever was stored before (install).
    [[nodiscard]] virtual Status initialize(const BootState& s) = 0;
};

// Where a slot's image lives: a byte range of a disk, partition or image file.
struct SlotDevice {
    std::string path;
    uint64_t start = 0, size = 0;
};

struct SlotDevices {
    SlotDevice a, b;
    [[nodiscard]] const SlotDevice& at(Slot s) const { return s == Slot::A ? a : b; }
};

}  // namespace ballast::boot
