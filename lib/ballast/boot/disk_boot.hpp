// A Ballast disk's boot side: its slot partitions and the boot control on its ESP: systemd-boot's
// when the ESP holds its record (/loader/ballast), else GRUB's.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ballast/boot/control.hpp"
#include "ballast/boot/esp.hpp"
#include "ballast/boot/grub.hpp"

namespace ballast::boot {

class DiskBoot {
  public:
    // Reads the GPT of `disk` (device or image file) and opens the ESP's boot control.
    [[nodiscard]] static Result<DiskBoot> open(const std::string& disk);
    [[nodiscard]] BootControl& control() { return *control_; }
    [[nodiscard]] const SlotDevices& slots() const { return slots_; }
    [[nodiscard]] const std::string& disk() const { return disk_; }

  private:
    std::string disk_;
    SlotDevices slots_;
    std::unique_ptr<Esp> esp_;
    std::unique_ptr<FatEnvStore> store_;
    std::unique_ptr<FatUkiStore> ukis_;
    std::unique_ptr<BootControl> control_;
};

// The slots as GetStatus reports them: [{Slot, State, Version, Tries, Primary, LastGood, Booted}].
[[nodiscard]] nlohmann::json slots_json(const BootState& s, std::optional<Slot> booted);

}  // namespace ballast::boot
