// Filesystems on byte ranges of a disk or image file, with the standard tools (mkfs.fat with
// --offset, mke2fs -E offset=, mtools with file@@offset): no loop device, no mount.
#pragma once

#include <cstdint>
#include <string>

#include "ballast/core/result.hpp"

namespace ballast::disk {

[[nodiscard]] Status make_vfat(const std::string& device, uint64_t offset, uint64_t size,
                               const std::string& label);
// `populate`: a folder whose content becomes the filesystem's (mke2fs -d), or "". `lazy`: leave
// inode tables and journal unwritten (the kernel initialises them on first mount), so unwritten
// ranges of the result need not read as zeros.
[[nodiscard]] Status make_ext4(const std::string& device, uint64_t offset, uint64_t size,
                               const std::string& label, const std::string& populate = "",
                               bool lazy = false);
// mtools on the FAT filesystem at `offset`: make a folder (parents too), copy a file in.
[[nodiscard]] Status fat_mkdir(const std::string& device, uint64_t offset, const std::string& path);
[[nodiscard]] Status fat_put(const std::string& device, uint64_t offset, const std::string& src,
                             const std::string& dst);
// debugfs on the ext4 filesystem at `offset`: put `src` in its root folder as `name` (replacing
// a file of that name; `src`'s mode is kept), read back and compared. Names are plain
// ([A-Za-z0-9._+-]), as debugfs parses its requests.
[[nodiscard]] Status ext4_put(const std::string& device, uint64_t offset, const std::string& src,
                              const std::string& name);

}  // namespace ballast::disk
