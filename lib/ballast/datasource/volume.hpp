// Seed volumes (NoCloud's cidata, OpenStack's config-2, Azure's provisioning DVD): found by
// filesystem label or type with libblkid and read in user space (mtools, isoinfo, debugfs, the
// UDF reader of datasource/udf.hpp), so that no kernel filesystem driver ever parses a
// removable medium.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ballast/core/result.hpp"

namespace ballast::datasource {

struct Volume {
    std::string device, type;
};

// The first block device (every one under /sys/class/block when `live`, plus the files of the
// test hook $BALLAST_DATASOURCE_DEVICES, colon-separated) whose label is one of `labels`
// (compared without case).
[[nodiscard]] std::optional<Volume> find_volume(const std::vector<std::string_view>& labels,
                                                bool live);

// The block devices (as find_volume looks) holding one of the filesystem `types`, in the order
// of `types` (cloud-init's rule for Azure's DVD: iso9660, then udf).
[[nodiscard]] std::vector<Volume> find_volumes_by_type(const std::vector<std::string_view>& types,
                                                       bool live);

// A file of the volume ("user-data", "openstack/latest/meta_data.json"); nullopt when it is not
// there (or empty).
[[nodiscard]] Result<std::optional<std::string>> read_volume_file(const Volume& v,
                                                                  const std::string& path);

}  // namespace ballast::datasource
