// Writing and reading GPT partition tables (libfdisk to write, libblkid to read), on a block
// device or a regular image file, with no kernel partition support needed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ballast/core/result.hpp"
#include "ballast/disk/layout.hpp"

namespace ballast::disk {

// Creates a new GPT with exactly these partitions (replacing any table).
[[nodiscard]] Status write_gpt(const std::string& device, const std::vector<PartitionPlan>& parts);

struct PartitionInfo {
    int number = 0;
    std::string label;  // PARTLABEL
    std::string type;   // type GUID, upper case
    uint64_t start = 0, size = 0;
};
// The partitions of a GPT (empty when the device has no partition table).
[[nodiscard]] Result<std::vector<PartitionInfo>> read_partitions(const std::string& device);
[[nodiscard]] std::optional<PartitionInfo> find_label(const std::vector<PartitionInfo>& parts,
                                                      const std::string& label);

// What the start of a device or range holds: a partition table ("gpt", "dos") or a filesystem
// ("ext4", "vfat", "squashfs", ...); nullopt when blank.
[[nodiscard]] Result<std::optional<std::string>> probe_content(const std::string& device,
                                                               uint64_t offset = 0,
                                                               uint64_t size = 0);

// Whether the device (or a partition of it, or for an image file a loop device backed by it,
// or anything stacked on those, like dm-crypt) is mounted; the mount point when it is. With a
// range (`size` 0: to the end), only partitions and loop devices that share a byte with it
// count, and the whole device mounted: a slot mounted from a disk does not make its persistent
// partition busy.
[[nodiscard]] Result<std::optional<std::string>> mounted_at(const std::string& device,
                                                            uint64_t offset = 0, uint64_t size = 0);

// Where a tool that opens its device whole (mke2fs: O_EXCL) can write [offset, offset + size)
// of `device`: on a block device, the kernel's node of the partition at exactly that range
// ("/dev/vda5", offset 0), since a disk with a mounted partition cannot be opened exclusively;
// else `device` and `offset` as they are.
struct RangeNode {
    std::string path;
    uint64_t offset = 0;
};
[[nodiscard]] Result<RangeNode> range_node(const std::string& device, uint64_t offset,
                                           uint64_t size);

// The disk a partition device belongs to ("/dev/vda" for "/dev/vda5" or a link to it, through
// sysfs); nullopt when `device` is not a partition.
[[nodiscard]] Result<std::optional<std::string>> parent_disk(const std::string& device);

}  // namespace ballast::disk
