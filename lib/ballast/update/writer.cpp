#include "ballast/update/writer.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
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

// 8 MiB in flight (plus the read-back's buffer): edge nodes running k3s on 1-2 GB feel every
// buffer, and 1 MiB O_DIRECT writes already keep a disk at its rate (docs/performance.md,
// upgrade: the same wall time as 4 MiB buffers, a quarter of the memory).
constexpr size_t kChunk = 1u << 20;
constexpr size_t kAlign = 4096;
constexpr int kBuffers = 6;

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

// The first error any of the pipeline's threads meets; the others see it and stop working.
class FirstError {
  public:
    void set(Error e) {
        std::lock_guard l(m_);
        if (!error_) error_ = std::move(e);
        any_ = true;
    }
    explicit operator bool() const { return any_.load(); }
    std::optional<Error> take() {
        std::lock_guard l(m_);
        return std::move(error_);
    }

  private:
    std::mutex m_;
    std::optional<Error> error_;
    std::atomic<bool> any_{false};
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

// The slot being written: a byte range of a device or image file.
struct Target {
    UniqueFd fd;
    uint64_t offset, size;
    std::string what;  // "path[offset+size]", for messages
    [[nodiscard]] Status sync() const {
        if (::fdatasync(fd.get()) < 0) return fail_errno(errno, "sync " + what);
        return {};
    }
};

// Step 2 of write_image. This thread reads the source into buffers; a hasher and a writer drain
// them; a checker reads each block back from the target once it is written and compares it with
// the very bytes that were hashed. Equal bytes make a second SHA-256 pass over the target
// unnecessary: the target holds what hashed to the manifest's digest. The header region is
// copied out, to be written last.
class Pipeline {
  public:
    static Result<Pipeline> make(const Target& t, uint64_t size, const WriteProgress& progress) {
        Pipeline p(t, size, progress, BALLAST_TRY(Sha256::make()));
        for (int i = 0; i < kBuffers; ++i) {
            p.bufs_.push_back(std::make_unique<AlignedBuffer>(kChunk));
            if (!p.bufs_.back()->data) return fail(Errc::failed, "out of memory for write buffers");
        }
        if (!p.back_->data) return fail(Errc::failed, "out of memory for write buffers");
        return p;
    }

    // The image's digest, once every block is written and read back equal; the first
    // kHeaderSize bytes land in `header`.
    Result<std::string> run(const ImageReader& source, AlignedBuffer& header) {
        header_ = &header;
        for (int i = 0; i < kBuffers; ++i)
            queues_->free_q.push(i);
        std::thread hasher([this] { hash_loop(); });
        std::thread writer([this] { write_loop(); });
        std::thread checker([this] { check_loop(); });
        auto read_error = read_loop(source);
        queues_->to_hash.close();
        queues_->to_write.close();
        hasher.join();
        writer.join();
        checker.join();
        if (read_error) return std::unexpected(*read_error);
        if (auto e = io_error_->take()) return std::unexpected(std::move(*e));
        // A source longer than the manifest says is refused too.
        uint8_t extra;
        if (auto r = source(&extra, 1); r && *r > 0)
            return fail(Errc::verification,
                        "the image is longer than the {} bytes the manifest says", size_);
        return hash_.hex();
    }

  private:
    Pipeline(const Target& t, uint64_t size, const WriteProgress& progress, Sha256 hash)
        : t_(&t),
          size_(size),
          progress_(progress),
          hash_(std::move(hash)),
          back_(std::make_unique<AlignedBuffer>(kChunk)),
          queues_(std::make_unique<Queues>()),
          io_error_(std::make_unique<FirstError>()) {}

    // The part of a block written now: everything but the header region, padded to whole
    // 4 KiB blocks for O_DIRECT (the slot is larger than the image; the padding is zeros).
    struct Span {
        size_t skip, n, padded;
    };
    [[nodiscard]] Span body_of(const AlignedBuffer& b) const {
        Span sp;
        sp.skip =
            b.offset < kHeaderSize ? size_t(std::min<uint64_t>(kHeaderSize - b.offset, b.len)) : 0;
        sp.n = b.len - sp.skip;
        sp.padded = (sp.n + kAlign - 1) / kAlign * kAlign;
        if (b.offset + sp.skip + sp.padded > t_->size) sp.padded = sp.n;
        return sp;
    }
    // The hasher and the checker each release a buffer; the second one frees it.
    void release(int i) {
        std::lock_guard l(queues_->pm);
        if (--queues_->pending[size_t(i)] == 0) queues_->free_q.push(i);
    }
    void hash_loop() {
        while (auto i = queues_->to_hash.pop()) {
            hash_.update(std::span<const uint8_t>(bufs_[size_t(*i)]->data, bufs_[size_t(*i)]->len));
            release(*i);
        }
    }
    void write_loop() {
        while (auto i = queues_->to_write.pop()) {
            auto& b = *bufs_[size_t(*i)];
            const Span sp = body_of(b);
            if (b.offset == 0)
                std::memcpy(header_->data, b.data, size_t(std::min<uint64_t>(kHeaderSize, b.len)));
            if (sp.padded > sp.n) std::memset(b.data + sp.skip + sp.n, 0, sp.padded - sp.n);
            if (sp.n > 0 && !*io_error_) {
                auto st = pwrite_all(t_->fd.get(), b.data + sp.skip, sp.padded,
                                     t_->offset + b.offset + sp.skip, t_->what);
                if (!st) io_error_->set(std::move(st).error());
            }
            if (progress_) progress_(WritePhase::writing, b.offset + b.len, size_);
            queues_->to_check.push(*i);
        }
        queues_->to_check.close();
    }
    void check_loop() {
        while (auto i = queues_->to_check.pop()) {
            auto& b = *bufs_[size_t(*i)];
            const Span sp = body_of(b);
            if (sp.n > 0 && !*io_error_) {
                auto st = pread_all(t_->fd.get(), back_->data, sp.padded,
                                    t_->offset + b.offset + sp.skip, t_->what);
                if (!st)
                    io_error_->set(std::move(st).error().context("read back"));
                else if (std::memcmp(back_->data, b.data + sp.skip, sp.n) != 0)
                    io_error_->set(Error(Errc::verification,
                                         fmt::format("read back from the slot, bytes {}..{} "
                                                     "differ from what was written",
                                                     b.offset + sp.skip, b.offset + b.len)));
            }
            if (progress_) progress_(WritePhase::reading_back, b.offset + b.len, size_);
            release(*i);
        }
    }
    // Reads the image into free buffers and hands each to the hasher and the writer.
    std::optional<Error> read_loop(const ImageReader& source) {
        for (uint64_t offset = 0; offset < size_;) {
            auto i = queues_->free_q.pop();
            auto& b = *bufs_[size_t(*i)];
            const size_t want = size_t(std::min<uint64_t>(kChunk, size_ - offset));
            size_t got = 0;
            while (got < want) {
                auto r = source(b.data + got, want - got);
                if (!r) return r.error();
                if (*r == 0)
                    return Error(Errc::verification,
                                 fmt::format("the image ends at {} bytes; the manifest says {}",
                                             offset + got, size_));
                got += *r;
            }
            b.len = got;
            b.offset = offset;
            offset += got;
            {
                std::lock_guard l(queues_->pm);
                queues_->pending[size_t(*i)] = 2;
            }
            queues_->to_hash.push(*i);
            queues_->to_write.push(*i);
            if (*io_error_) break;  // no point reading on; run() reports the error
        }
        return std::nullopt;
    }

    // Behind pointers so that make() can return the pipeline (mutexes do not move).
    struct Queues {
        Queue to_hash, to_write, to_check, free_q;
        std::mutex pm;
        std::vector<int> pending = std::vector<int>(kBuffers, 0);
    };
    const Target* t_;
    uint64_t size_;
    WriteProgress progress_;
    Sha256 hash_;
    std::vector<std::unique_ptr<AlignedBuffer>> bufs_;
    std::unique_ptr<AlignedBuffer> back_;
    AlignedBuffer* header_ = nullptr;
    std::unique_ptr<Queues> queues_;
    std::unique_ptr<FirstError> io_error_;
};

// Steps 4 and 5 of write_image: the header last, then as the target holds it (the rest was
// compared block by block).
Status write_header(const Target& t, AlignedBuffer& header, uint64_t size) {
    const size_t head = size_t(std::min<uint64_t>(kHeaderSize, size));
    const size_t head_padded =
        std::min<size_t>((head + kAlign - 1) / kAlign * kAlign, size_t(t.size));
    if (head_padded > head) std::memset(header.data + head, 0, head_padded - head);
    BALLAST_TRY(pwrite_all(t.fd.get(), header.data, head_padded, t.offset, t.what));
    BALLAST_TRY(t.sync());
    failpoint("write.header-written");
    AlignedBuffer back(kHeaderSize);
    if (!back.data) return fail(Errc::failed, "out of memory for write buffers");
    BALLAST_TRY(pread_all(t.fd.get(), back.data, head_padded, t.offset, t.what));
    if (std::memcmp(back.data, header.data, head) != 0)
        return fail(Errc::verification,
                    "read back from the slot, the header differs from what was written");
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
    Target t{UniqueFd(::open(target_path.c_str(), O_RDWR | O_CLOEXEC | O_DIRECT)), target_offset,
             target_size, fmt::format("{}[{}+{}]", target_path, target_offset, target_size)};
    stats.direct = bool(t.fd);
    if (!t.fd) t.fd.reset(::open(target_path.c_str(), O_RDWR | O_CLOEXEC));  // tmpfs and friends
    if (!t.fd) return fail_errno(errno, target_path);
    AlignedBuffer header(kHeaderSize);
    if (!header.data) return fail(Errc::failed, "out of memory for write buffers");

    // 1. No signature on the target from here on.
    std::memset(header.data, 0, kHeaderSize);
    BALLAST_TRY(pwrite_all(t.fd.get(), header.data,
                           size_t(std::min<uint64_t>(kHeaderSize, target_size)), target_offset,
                           t.what));
    BALLAST_TRY(t.sync());
    failpoint("write.header-cleared");

    // 2. Everything but the header region, hashed and read back as it goes.
    auto pipeline = BALLAST_TRY(Pipeline::make(t, size, progress));
    const std::string digest = BALLAST_TRY(pipeline.run(source, header));
    BALLAST_TRY(t.sync());
    failpoint("write.body-written");

    // 3. The hash decides whether the header is ever written.
    if (digest != sha256)
        return fail(Errc::verification,
                    "image sha256 {} does not match the manifest's {}; the slot was left without "
                    "a filesystem header",
                    digest, sha256);

    // 4-5. Header last, then read back.
    if (progress) progress(WritePhase::header, size, size);
    BALLAST_TRY(write_header(t, header, size));
    stats.bytes = size;
    return stats;
}

}  // namespace ballast::update
