#include "ballast/disk/range.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace ballast::disk {

Result<uint64_t> device_size(int fd, const std::string& name) {
    struct stat st {};
    if (::fstat(fd, &st) < 0) return fail_errno(errno, name);
    if (S_ISBLK(st.st_mode)) {
        uint64_t size = 0;
        if (::ioctl(fd, BLKGETSIZE64, &size) < 0) return fail_errno(errno, name + ": size");
        return size;
    }
    if (S_ISREG(st.st_mode)) return uint64_t(st.st_size);
    return fail(Errc::invalid_argument, "{}: not a block device or a regular file", name);
}

Result<ByteRange> ByteRange::open(const std::string& path, uint64_t offset, uint64_t size,
                                  Mode mode, bool direct) {
    ByteRange r;
    int flags = (mode == Mode::write ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOCTTY;
    if (direct) flags |= O_DIRECT;
    r.fd_.reset(::open(path.c_str(), flags));
    if (!r.fd_) return fail_errno(errno, path);
    const uint64_t total = BALLAST_TRY(device_size(r.fd_.get(), path));
    if (offset > total)
        return fail(Errc::invalid_argument, "{}: offset {} is beyond its end ({} bytes)", path,
                    offset, total);
    if (size == 0) size = total - offset;
    if (offset + size > total)
        return fail(Errc::invalid_argument, "{}: range {}+{} is beyond its end ({} bytes)", path,
                    offset, size, total);
    r.path_ = path;
    r.offset_ = offset;
    r.size_ = size;
    r.whole_ = offset == 0 && size == total;
    return r;
}

Status ByteRange::discard() const {
    struct stat st {};
    if (::fstat(fd_.get(), &st) < 0) return fail_errno(errno, name());
    int r = 0;
    if (S_ISBLK(st.st_mode)) {
        uint64_t span[2] = {offset_, size_};
        r = ::ioctl(fd_.get(), BLKDISCARD, span);
    } else {
        r = ::fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off_t(offset_),
                        off_t(size_));
    }
    if (r == 0) return {};
    if (errno == EOPNOTSUPP || errno == ENOTTY || errno == EINVAL)
        return fail(Errc::unsupported, "{}: discard is not supported here", name());
    return fail_errno(errno, name() + ": discard");
}

std::string ByteRange::name() const {
    return whole_ ? path_ : fmt::format("{}[{}+{}]", path_, offset_, size_);
}

Status ByteRange::read_at(void* buf, size_t n, uint64_t off) const {
    if (off > size_ || n > size_ - off)
        return fail(Errc::invalid_argument, "{}: read of {} bytes at {} is out of range", name(), n,
                    off);
    auto* p = static_cast<char*>(buf);
    while (n > 0) {
        ssize_t r = ::pread(fd_.get(), p, n, off_t(offset_ + off));
        if (r < 0) {
            if (errno == EINTR) continue;
            return fail_errno(errno, name());
        }
        if (r == 0) return fail(Errc::io, "{}: unexpected end at {}", name(), off);
        p += r;
        n -= size_t(r);
        off += uint64_t(r);
    }
    return {};
}

Status ByteRange::write_at(const void* buf, size_t n, uint64_t off) const {
    if (off > size_ || n > size_ - off)
        return fail(Errc::invalid_argument, "{}: write of {} bytes at {} is out of range", name(),
                    n, off);
    auto* p = static_cast<const char*>(buf);
    while (n > 0) {
        ssize_t r = ::pwrite(fd_.get(), p, n, off_t(offset_ + off));
        if (r < 0) {
            if (errno == EINTR) continue;
            return fail_errno(errno, name());
        }
        p += r;
        n -= size_t(r);
        off += uint64_t(r);
    }
    return {};
}

Status ByteRange::sync() const {
    if (::fsync(fd_.get()) < 0) return fail_errno(errno, "fsync " + name());
    return {};
}

}  // namespace ballast::disk
