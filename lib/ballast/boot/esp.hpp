// The boot state on a real ESP, reached through the FAT filesystem with no mount: GRUB's two
// environment files rewritten in place, and systemd-boot's UKIs in /EFI/Linux (listed and read
// and renamed here), opened from the disk that holds the Ballast partitions.
#pragma once

#include <memory>
#include <string>

#include "ballast/boot/grub.hpp"
#include "ballast/boot/sdboot.hpp"
#include "ballast/disk/fat.hpp"
#include "ballast/disk/range.hpp"

namespace ballast::boot {

// The systemd-boot backend's record (sdboot.hpp): two 1024-byte blocks in GRUB's format, which
// the loader never reads.
inline constexpr const char* kSdBootRecord1 = "/loader/ballast/env1";
inline constexpr const char* kSdBootRecord2 = "/loader/ballast/env2";

// The ESP as a byte range (a partition of a disk or image file, or a partition device) and its
// FAT volume.
class Esp {
  public:
    [[nodiscard]] static Result<std::unique_ptr<Esp>> open(const std::string& path, uint64_t offset,
                                                           uint64_t size);
    [[nodiscard]] const disk::FatVolume& fat() const { return *fat_; }
    // Whether the file exists; errors other than its absence are errors.
    [[nodiscard]] Result<bool> has(std::string_view file) const {
        auto f = fat_->find(file);
        if (f) return true;
        if (f.error().code() == Errc::not_found) return false;
        return std::unexpected(f.error());
    }

  private:
    explicit Esp(disk::ByteRange r) : range_(std::move(r)) {}
    disk::ByteRange range_;
    std::optional<disk::FatVolume> fat_;
};

// Two environment files rewritten in place: GRUB's (kEnvCopy1/2) or systemd-boot's record.
class FatEnvStore final : public EnvStore {
  public:
    FatEnvStore(const Esp& esp, std::string copy1, std::string copy2)
        : esp_(esp), copies_{std::move(copy1), std::move(copy2)} {}
    [[nodiscard]] Result<std::string> read(int copy) override;
    [[nodiscard]] Status write(int copy, std::string_view block) override;
    [[nodiscard]] std::string where(int copy) const override { return copies_[copy == 1 ? 0 : 1]; }

  private:
    const Esp& esp_;
    std::string copies_[2];
};

// /EFI/Linux: each file's .osrel identity read from its PE headers as the loader finds it,
// renames in place (disk::FatVolume::rename: a cut never leaves the file with no name).
class FatUkiStore final : public UkiStore {
  public:
    explicit FatUkiStore(const Esp& esp) : esp_(esp) {}
    [[nodiscard]] Result<std::vector<File>> list() override;
    [[nodiscard]] Status rename(const std::string& from, const std::string& to) override;
    [[nodiscard]] Status drop_alias(const std::string& alias) override;
    [[nodiscard]] Status tidy() override;

  private:
    const Esp& esp_;
};

}  // namespace ballast::boot
