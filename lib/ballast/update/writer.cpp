#include "ballast/update/writer.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "ballast/core/failpoint.hpp"
#include "ballast/core/fd.hpp"
#include "ballast/core/sha256.hpp"

namespace ballast::update {
namespace {

constexpr size_t kChunk = 4u << 20;
constexpr size_t kAlign = 4096;
constexpr int kBuffers = 4;

struct AlignedBuffer {
    uint8_t* data = nullptr;
    size_t len = 0;  // bytes of image in it
    uint64_t offset = 0;
    explicit AlignedBuffer(size_t cap) {
        if (::posix_memalign(reinterpret_cast<void**>(&data), kAlign, cap) != 0) data = nullptr;
    }
    ~AlignedBuffer() { std::free(data); }
    AlignedBuffer(const AlignedBuffer&) = delete;
    AlignedBuffer& operator=(const AlignedBuffer&) = delete;
};

// A queue of buffer indexes between two threads; `close()` ends it.
class Queue {
  public:
    void push(int i) {
        std::lock_guard l(m_);
        q_.push_back(i);
        cv_.notify_one();
    }
    std::optional<int> pop() {
        std::unique_lock l(m_);
        cv_.wait(l, [&] { return !q_.empty() || closed_; });
        if (q_.empty()) return std::nullopt;
        int i = q_.front();
        q_.pop_front();
        return i;
    }
    void close() {
        std::lock_guard l(m_);
        closed_ = true;
        cv_.notify_all();
    }

  private:
    std::mutex m_;
    std::condition_variable cv_;
    std::deque<int> q_;
    bool closed_ = false;
};

Status pwrite_all(int fd, const uint8_t* p, size_t n, uint64_t off, const std::string& what) {
    while (n > 0) {
        ssize_t w = ::pwrite(fd, p, n, off_t(off));
        if (w < 0) {
            if (errno == EINTR) continue;
            return fail_errno(errno, what);
        }
        p += w;
        n -= size_t(w);
        off += uint64_t(w);
    }
    return {};
}

Status pread_all(int fd, uint8_t* p, size_t n, uint64_t off, const std::string& what) {
    while (n > 0) {
        ssize_t r = ::pread(fd, p, n, off_t(off));
        if (r < 0) {
            if (errno == EINTR) continue;
            return fail_errno(errno, what);
        }
        if (r == 0) return fail(Errc::io, "{}: unexpected end", what);
        p += r;
        n -= size_t(r);
        off += uint64_t(r);
    }
    return {};
}

}  // namespace

Result<ImageReader> file_reader(const std::string& path, uint64_t offset, uint64_t size) {
    auto fd = std::make_shared<UniqueFd>(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!*fd) return fail_errno(errno, path);
    ::posix_fadvise(fd->get(), off_t(offset), off_t(size), POSIX_FADV_SEQUENTIAL);
    auto pos = std::make_shared<uint64_t>(0);
    return ImageReader([fd, pos, offset, size, path](uint8_t* buf, size_t n) -> Result<size_t> {
        if (*pos >= size) return size_t(0);
        n = size_t(std::min<uint64_t>(n, size - *pos));
        size_t got = 0;
        while (got < n) {
            ssize_t r = ::pread(fd->get(), buf + got, n - got, off_t(offset + *pos + got));
            if (r < 0) {
                if (errno == EINTR) continue;
                return fail_errno(errno, path);
            }
            if (r == 0)
                return fail(Errc::verification, "{}: the image ends early, at {} bytes", path,
                            *pos + got);
            got += size_t(r);
        }
        *pos += got;
        return got;
    });
}

Result<WriteStats> write_image(const ImageReader& source, uint64_t size, const std::string& sha256,
                               const std::string& target_path, uint64_t target_offset,
                               uint64_t target_size, const WriteProgress& progress) {
    if (size > target_size)
        return fail(Errc::invalid_argument, "the image ({} bytes) does not fit the slot ({} bytes)",
                    size, target_size);
    if (target_offset % kAlign != 0)
        return fail(Errc::invalid_argument, "slot offset {} is not 4 KiB aligned", target_offset);
    WriteStats stats;
    UniqueFd fd(::open(target_path.c_str(), O_RDWR | O_CLOEXEC | O_DIRECT));
    stats.direct = bool(fd);
    if (!fd) fd.reset(::open(target_path.c_str(), O_RDWR | O_CLOEXEC));  // tmpfs and friends
    if (!fd) return fail_errno(errno, target_path);
    const std::string what = fmt::format("{}[{}+{}]", target_path, target_offset, target_size);

    std::vector<std::unique_ptr<AlignedBuffer>> bufs;
    for (int i = 0; i < kBuffers; ++i) {
        bufs.push_back(std::make_unique<AlignedBuffer>(kChunk));
        if (!bufs.back()->data) return fail(Errc::failed, "out of memory for write buffers");
    }
    AlignedBuffer header(kHeaderSize);
    if (!header.data) return fail(Errc::failed, "out of memory");

    // 1. No signature on the target from here on.
    std::memset(header.data, 0, kHeaderSize);
    BALLAST_TRY(pwrite_all(fd.get(), header.data,
                           size_t(std::min<uint64_t>(kHeaderSize, target_size)), target_offset,
                           what));
    if (::fdatasync(fd.get()) < 0) return fail_errno(errno, "sync " + what);
    failpoint("write.header-cleared");

    // 2. Stream: the reader (this thread) fills buffers; a hasher and a writer drain them.
    Queue to_hash, to_write, free_q;
    for (int i = 0; i < kBuffers; ++i)
        free_q.push(i);
    std::vector<int> pending(kBuffers, 0);  // 2 users per filled buffer
    std::mutex pm;
    Sha256 hash;
    std::optional<Error> write_error;
    auto release = [&](int i) {
        std::lock_guard l(pm);
        if (--pending[size_t(i)] == 0) free_q.push(i);
    };
    std::thread hasher([&] {
        while (auto i = to_hash.pop()) {
            hash.update(std::span<const uint8_t>(bufs[size_t(*i)]->data, bufs[size_t(*i)]->len));
            release(*i);
        }
    });
    std::thread writer([&] {
        while (auto i = to_write.pop()) {
            auto& b = *bufs[size_t(*i)];
            if (!write_error) {
                // The header region is held back until the hash is known.
                uint64_t skip =
                    b.offset < kHeaderSize ? std::min<uint64_t>(kHeaderSize - b.offset, b.len) : 0;
                if (b.offset == 0)
                    std::memcpy(header.data, b.data,
                                size_t(std::min<uint64_t>(kHeaderSize, b.len)));
                size_t n = b.len - size_t(skip);
                // O_DIRECT needs whole blocks: pad the tail with zeros (the slot is larger).
                size_t padded = (n + kAlign - 1) / kAlign * kAlign;
                if (padded > n) std::memset(b.data + skip + n, 0, padded - n);
                if (n > 0 && b.offset + skip + padded > target_size) padded = n;
                if (n > 0) {
                    auto st = pwrite_all(fd.get(), b.data + skip, padded,
                                         target_offset + b.offset + skip, what);
                    if (!st) write_error = st.error();
                }
                if (progress) progress(WritePhase::writing, b.offset + b.len, size);
            }
            release(*i);
        }
    });
    auto stop_threads = [&] {
        to_hash.close();
        to_write.close();
        hasher.join();
        writer.join();
    };
    uint64_t offset = 0;
    std::optional<Error> read_error;
    while (offset < size) {
        auto i = free_q.pop();
        auto& b = *bufs[size_t(*i)];
        size_t want = size_t(std::min<uint64_t>(kChunk, size - offset));
        size_t got = 0;
        while (got < want) {
            auto r = source(b.data + got, want - got);
            if (!r) {
                read_error = r.error();
                break;
            }
            if (*r == 0) {
                read_error = Error(Errc::verification,
                                   fmt::format("the image ends at {} bytes; the manifest says {}",
                                               offset + got, size));
                break;
            }
            got += *r;
        }
        if (read_error) break;
        b.len = got;
        b.offset = offset;
        offset += got;
        {
            std::lock_guard l(pm);
            pending[size_t(*i)] = 2;
        }
        to_hash.push(*i);
        to_write.push(*i);
        if (offset == size) break;
    }
    stop_threads();
    if (read_error) return std::unexpected(*read_error);
    if (write_error) return std::unexpected(*write_error);
    // A source longer than the manifest says is refused too.
    {
        uint8_t extra;
        auto r = source(&extra, 1);
        if (r && *r > 0)
            return fail(Errc::verification,
                        "the image is longer than the {} bytes the manifest says", size);
    }
    if (::fdatasync(fd.get()) < 0) return fail_errno(errno, "sync " + what);
    failpoint("write.body-written");

    // 3. The hash decides whether the header is ever written.
    const std::string digest = hash.hex();
    if (digest != sha256)
        return fail(Errc::verification,
                    "image sha256 {} does not match the manifest's {}; the slot was left without "
                    "a filesystem header",
                    digest, sha256);

    // 4. Header last.
    if (progress) progress(WritePhase::header, size, size);
    const size_t head = size_t(std::min<uint64_t>(kHeaderSize, size));
    const size_t head_padded =
        std::min<size_t>((head + kAlign - 1) / kAlign * kAlign, size_t(target_size));
    if (head_padded > head) std::memset(header.data + head, 0, head_padded - head);
    BALLAST_TRY(pwrite_all(fd.get(), header.data, head_padded, target_offset, what));
    if (::fdatasync(fd.get()) < 0) return fail_errno(errno, "sync " + what);
    failpoint("write.header-written");

    // 5. Read back everything and hash it again, from the device (O_DIRECT: not the cache).
    Sha256 back;
    uint64_t done = 0;
    auto& rb = *bufs[0];
    while (done < size) {
        size_t n = size_t(std::min<uint64_t>(kChunk, size - done));
        size_t padded =
            std::min<size_t>((n + kAlign - 1) / kAlign * kAlign, size_t(target_size - done));
        BALLAST_TRY(
            pread_all(fd.get(), rb.data, stats.direct ? padded : n, target_offset + done, what));
        back.update(std::span<const uint8_t>(rb.data, n));
        done += n;
        if (progress) progress(WritePhase::reading_back, done, size);
    }
    const std::string readback = back.hex();
    if (readback != sha256)
        return fail(Errc::verification,
                    "read back from the slot, the image hashes to {} instead of {}", readback,
                    sha256);
    stats.bytes = size;
    return stats;
}

}  // namespace ballast::update
