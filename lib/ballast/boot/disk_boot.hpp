// The boot state of a Ballast disk: its partitions and the GRUB boot control on its ESP.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ballast/boot/esp.hpp"
#include "ballast/boot/grub.hpp"
#include "ballast/disk/partition.hpp"

namespace ballast::boot {

class DiskBoot {
  public:
    // Reads the GPT of `disk` (device or image file) and opens the ESP's boot control.
    [[nodiscard]] static Result<DiskBoot> open(const std::string& disk);
    [[nodiscard]] GrubBootControl& control() { return *control_; }
    [[nodiscard]] const disk::PartitionInfo& slot_partition(Slot s) const {
        return s == Slot::A ? a_ : b_;
    }
    [[nodiscard]] const std::string& disk() const { return disk_; }

  private:
    std::string disk_;
    disk::PartitionInfo a_, b_;
    std::unique_ptr<FatEnvStore> store_;
    std::unique_ptr<GrubBootControl> control_;
};

// The slots as GetStatus reports them: [{Slot, State, Version, Tries, Primary, LastGood, Booted}].
[[nodiscard]] nlohmann::json slots_json(const BootState& s, std::optional<Slot> booted);

}  // namespace ballast::boot
