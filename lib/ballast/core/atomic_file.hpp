// Crash-safe file replacement: after a power cut the path holds either the old or the new
// content, never a mix or an empty file.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string_view>

#include "ballast/core/result.hpp"

namespace ballast {

struct AtomicWriteOptions {
    mode_t mode = 0644;
    std::optional<uid_t> uid;  // chown the new file before it becomes visible
    std::optional<gid_t> gid;
};

// tmp file in the same directory -> write -> fchmod/fchown -> fsync -> rename -> fsync dir.
// The directory must exist. On failure the temporary file is removed and the target untouched.
[[nodiscard]] Status write_file_atomic(const std::filesystem::path& path, std::string_view data,
                                       const AtomicWriteOptions& opts = {});

// fsync() the directory holding `path` (after a rename or unlink in it).
[[nodiscard]] Status fsync_parent_dir(const std::filesystem::path& path);

// Whole file into memory, for small files (configs, state). Refuses files over max_size.
[[nodiscard]] Result<std::string> read_file(const std::filesystem::path& path,
                                            size_t max_size = 64u << 20);

}  // namespace ballast
