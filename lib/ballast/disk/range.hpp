// A byte range of a block device or a regular file: a partition when the kernel does not
// expose partitions (image files, this build machine), or a whole disk. Every access is
// bounds-checked against the range.
#pragma once

#include <cstdint>
#include <string>

#include "ballast/core/fd.hpp"
#include "ballast/core/result.hpp"

namespace ballast::disk {

// Size of a block device (BLKGETSIZE64) or regular file.
[[nodiscard]] Result<uint64_t> device_size(int fd, const std::string& name);

class ByteRange {
  public:
    enum class Mode { read, write };
    // size 0: to the end of the device or file. `direct` opens with O_DIRECT (aligned I/O).
    [[nodiscard]] static Result<ByteRange> open(const std::string& path, uint64_t offset,
                                                uint64_t size, Mode mode, bool direct = false);

    [[nodiscard]] Status read_at(void* buf, size_t n, uint64_t off) const;
    [[nodiscard]] Status write_at(const void* buf, size_t n, uint64_t off) const;
    [[nodiscard]] Status sync() const;
    // Tells the device the range's blocks hold nothing (BLKDISCARD; a hole in an image file).
    // Errc::unsupported where the device or filesystem cannot.
    [[nodiscard]] Status discard() const;

    [[nodiscard]] uint64_t size() const { return size_; }
    [[nodiscard]] uint64_t offset() const { return offset_; }
    [[nodiscard]] const std::string& path() const { return path_; }
    [[nodiscard]] int fd() const { return fd_.get(); }
    // "disk.img[1048576+67108864]" or "/dev/vda" for messages.
    [[nodiscard]] std::string name() const;

  private:
    UniqueFd fd_;
    std::string path_;
    uint64_t offset_ = 0, size_ = 0;
    bool whole_ = false;
};

}  // namespace ballast::disk
