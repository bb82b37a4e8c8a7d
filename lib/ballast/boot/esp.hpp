// The boot state on a real ESP: its two environment files rewritten in place through the FAT
// filesystem (no mount), opened from the disk that holds the Ballast partitions.
#pragma once

#include <memory>
#include <string>

#include "ballast/boot/grub.hpp"
#include "ballast/disk/fat.hpp"
#include "ballast/disk/range.hpp"

namespace ballast::boot {

class FatEnvStore final : public EnvStore {
  public:
    // The ESP as a byte range (a partition of a disk or image file, or a partition device).
    [[nodiscard]] static Result<std::unique_ptr<FatEnvStore>> open(const std::string& path,
                                                                   uint64_t offset, uint64_t size);
    [[nodiscard]] Result<std::string> read(int copy) override;
    [[nodiscard]] Status write(int copy, std::string_view block) override;

  private:
    FatEnvStore(disk::ByteRange r) : range_(std::move(r)) {}
    disk::ByteRange range_;
    std::optional<disk::FatVolume> fat_;
};

}  // namespace ballast::boot
