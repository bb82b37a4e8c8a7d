// A read-only UDF reader in user space (ECMA-167 3rd edition as OSTA UDF 1.02-2.60 profiles it),
// so that Azure's provisioning DVD (ovf-env.xml on a UDF volume) is read without a kernel
// filesystem driver parsing a medium nobody vouches for, as the other seed volumes are.
//
// What it reads: the anchor at sector 256 (or at the end), the volume descriptor sequence (main,
// then reserve), the logical volume's physical partitions, the file set's root directory, File
// Entries and Extended File Entries with short, long or embedded allocation descriptors
// (continued through Allocation Extent Descriptors), and directories named in OSTA compressed
// Unicode: UDF 1.02 to 2.01 as mastering tools (genisoimage -udf, mkudffs) and hypervisors write
// read-only discs. Every descriptor's tag checksum, CRC and location are checked; every size,
// count and chain is bounded. Type 2 partition maps (UDF 2.50's metadata partition, the
// sparable and virtual ones of rewritable and write-once discs) are refused with a clear error.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "ballast/core/result.hpp"

namespace ballast::datasource {

// Exactly `length` bytes at byte `offset` of the volume, or an error.
using ReadAt = std::function<Result<std::string>(uint64_t offset, size_t length)>;

inline constexpr size_t kMaxUdfFile = 16u << 20;

// The regular file at `path` ('/'-separated, from the root directory) of the UDF volume of
// `size` bytes; nullopt when no such file is there. Errors name what is wrong with the volume.
[[nodiscard]] Result<std::optional<std::string>> udf_read_file(const ReadAt& read, uint64_t size,
                                                               std::string_view path,
                                                               size_t max_bytes = kMaxUdfFile);

}  // namespace ballast::datasource
