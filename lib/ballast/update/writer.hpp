// Streaming an image into a slot, in ab-update.md's order (steps 4 and 5):
//   1. zero the first 64 KiB and sync: from here on a cut leaves no filesystem signature;
//   2. write everything after the first 64 KiB while hashing it (hash and write overlap on two
//      threads; the target is written with O_DIRECT in 4 MiB blocks when it allows);
//   3. sync; stop if the hash differs from the manifest (the header is never written);
//   4. write the first 64 KiB (the superblock), sync;
//   5. read every block back from the target (as it is written) and compare it with the bytes
//      that were hashed; the header last.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "ballast/core/result.hpp"
#include "ballast/disk/range.hpp"

namespace ballast::update {

inline constexpr uint64_t kHeaderSize = 64 * 1024;

// Reads the image sequentially: fills up to n bytes, returns how many (0 only at the end).
using ImageReader = std::function<Result<size_t>(uint8_t* buf, size_t n)>;

enum class WritePhase { writing, header, reading_back };
using WriteProgress = std::function<void(WritePhase phase, uint64_t done, uint64_t total)>;

struct WriteStats {
    uint64_t bytes = 0;
    bool direct = false;  // O_DIRECT was used
};

// `target` must be opened for writing and at least `size` bytes. `failpoint(name)` is called
// between steps (tests stop the process there).
[[nodiscard]] Result<WriteStats> write_image(const ImageReader& source, uint64_t size,
                                             const std::string& sha256,
                                             const std::string& target_path, uint64_t target_offset,
                                             uint64_t target_size,
                                             const WriteProgress& progress = {});

// A reader over a byte range of a file (a bundle folder's image, or a tar member).
[[nodiscard]] Result<ImageReader> file_reader(const std::string& path, uint64_t offset,
                                              uint64_t size);

}  // namespace ballast::update
