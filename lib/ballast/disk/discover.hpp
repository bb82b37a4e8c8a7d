// Finding the disk that holds the Ballast partitions on a running node.
#pragma once

#include <string>

#include "ballast/core/result.hpp"
#include "ballast/disk/layout.hpp"

namespace ballast::disk {

// The whole-disk device holding the partition with PARTLABEL `partlabel` (libblkid: udev links
// first, then a probe of the block devices). Errc::not_found when no such partition exists.
[[nodiscard]] Result<std::string> find_disk_by_partlabel(const std::string& partlabel);

}  // namespace ballast::disk
