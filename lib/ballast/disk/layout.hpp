// The Ballast disk layout, planned without I/O: GPT, 1 MiB aligned,
//   1 BALLAST_EFI (vfat)  2 BALLAST_OEM (ext4)  3 BALLAST_A  4 BALLAST_B  5 BALLAST_PERSISTENT
//   (ext4)
// The partition numbers are fixed: grub.cfg boots slot A from partition 3 and B from 4.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ballast/core/result.hpp"

namespace ballast::disk {

inline constexpr uint64_t kMiB = 1024 * 1024;
inline constexpr const char* kEfiLabel = "BALLAST_EFI";
inline constexpr const char* kOemLabel = "BALLAST_OEM";
inline constexpr const char* kSlotALabel = "BALLAST_A";
inline constexpr const char* kSlotBLabel = "BALLAST_B";
inline constexpr const char* kPersistentLabel = "BALLAST_PERSISTENT";

// GPT type GUIDs.
inline constexpr const char* kTypeEsp = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
inline constexpr const char* kTypeLinux = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

struct PartitionPlan {
    int number;
    std::string label;
    std::string type;  // GPT type GUID
    std::string fs;    // "vfat", "ext4", "" (raw slot)
    uint64_t start;    // bytes
    uint64_t size;     // bytes
};

struct LayoutOptions {
    uint64_t disk_size = 0;
    uint64_t image_size = 0;
    uint64_t efi_mib = 64, oem_mib = 64;
    uint64_t slot_mib = 0;        // 0: max(2 x image, 256 MiB), for larger images later
    uint64_t persistent_mib = 0;  // 0: the rest of the disk
    uint64_t min_persistent_mib = 64;
};

// Errc::invalid_argument naming what does not fit.
[[nodiscard]] Result<std::vector<PartitionPlan>> plan_layout(const LayoutOptions& o);

// install.no-format: a partition found on the disk, with what it holds ("vfat", "ext4",
// "crypto_LUKS", "" when blank: libblkid's names).
struct FoundPartition {
    int number = 0;
    std::string label, type;
    uint64_t start = 0, size = 0;
    std::string content;
};
// The existing Ballast layout as a plan, when every partition is where grub.cfg looks for it
// and holds what it must (ESP vfat, OEM ext4, persistent ext4 or LUKS; slots big enough for
// `image_size`); else Errc::invalid_argument naming the partition and what is wrong.
[[nodiscard]] Result<std::vector<PartitionPlan>> check_existing_layout(
    const std::vector<FoundPartition>& found, uint64_t image_size);

// The slot size plan_layout chooses for an image.
[[nodiscard]] uint64_t default_slot_size(uint64_t image_size);

}  // namespace ballast::disk
