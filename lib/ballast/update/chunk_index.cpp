#include "ballast/update/chunk_index.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <bit>
#include <cstring>

#include "ballast/core/bytes.hpp"
#include "ballast/core/fd.hpp"
#include "ballast/core/sha256.hpp"

namespace ballast::update {
namespace {

constexpr char kMagic[8] = {'B', 'C', 'I', 'D', 'X', '\r', '\n', '\x1a'};
constexpr uint32_t kHashSha256 = 1;
constexpr uint32_t kChunkerBuzhash48 = 1;
constexpr size_t kWindow = 48;

// The byte table of buzhash48 v1: splitmix64 from a fixed seed. Part of the format: a node
// recomputing the index of its booted slot must cut where the publisher cut.
constexpr std::array<uint32_t, 256> make_table() {
    std::array<uint32_t, 256> t{};
    uint64_t s = 0x62616c6c61737431;  // "ballast1"
    for (auto& v : t) {
        s += 0x9e3779b97f4a7c15;
        uint64_t z = s;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
        z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
        v = uint32_t((z ^ (z >> 31)) >> 16);
    }
    return t;
}
constexpr auto kTable = make_table();

// The hash of a window of zero bytes: the stream starts as if preceded by one, so that the hash
// is a function of the last 48 bytes only, wherever they lie.
constexpr uint32_t zero_window_hash() {
    uint32_t h = 0;
    for (size_t i = 0; i < kWindow; ++i)
        h = std::rotl(h, 1) ^ kTable[0];
    return h;
}

}  // namespace

Status check_params(const ChunkParams& p) {
    if (p.min < 64 || p.min > p.avg || p.avg > p.max || p.min >= p.max || p.max > (16u << 20))
        return fail(Errc::invalid_argument,
                    "chunk sizes {}/{}/{} (min/avg/max) must satisfy 64 <= min <= avg <= max <= "
                    "16 MiB with min < max",
                    p.min, p.avg, p.max);
    return {};
}

Chunker::Chunker(ChunkParams p)
    // Lengths are min plus a geometric run with mean `discriminator`, cut short at max.
    : p_(p), discriminator_(std::max<uint32_t>(1, p.avg - p.min)), h_(zero_window_hash()) {}

size_t Chunker::scan(std::span<const uint8_t> data) {
    cut_ = false;
    const uint32_t d = discriminator_;
    for (size_t i = 0; i < data.size(); ++i) {
        const uint8_t in = data[i];
        const uint8_t out = window_[pos_];
        window_[pos_] = in;
        pos_ = pos_ + 1 == kWindow ? 0 : pos_ + 1;
        h_ = std::rotl(h_, 1) ^ std::rotl(kTable[out], int(kWindow % 32)) ^ kTable[in];
        ++len_;
        if (len_ < p_.min) continue;
        if (h_ % d == d - 1 || len_ >= p_.max) {
            len_ = 0;
            cut_ = true;
            return i + 1;
        }
    }
    return data.size();
}

Result<ChunkIndex> build_index(uint64_t size, const RangeReader& read, const ChunkParams& p,
                               const std::function<void(uint64_t, uint64_t)>& progress) {
    BALLAST_TRY(check_params(p));
    ChunkIndex idx;
    idx.params = p;
    idx.image_size = size;
    Chunker chunker(p);
    std::vector<uint8_t> buf(4u << 20);
    auto hash = BALLAST_TRY(Sha256::make());
    Chunk cur;
    auto finish = [&]() -> Status {
        cur.sha256 = hash.digest();
        idx.chunks.push_back(cur);
        cur = Chunk{cur.offset + cur.length, 0, {}};
        hash = BALLAST_TRY(Sha256::make());
        return {};
    };
    for (uint64_t done = 0; done < size;) {
        const size_t want = size_t(std::min<uint64_t>(buf.size(), size - done));
        const size_t got = BALLAST_TRY(read(done, buf.data(), want));
        if (got == 0)
            return fail(Errc::io, "the image ended at {} bytes, {} were expected", done, size);
        std::span<const uint8_t> rest(buf.data(), got);
        while (!rest.empty()) {
            const size_t n = chunker.scan(rest);
            hash.update(rest.first(n));
            cur.length += uint32_t(n);
            rest = rest.subspan(n);
            if (chunker.cut()) BALLAST_TRY(finish());
        }
        done += got;
        if (progress) progress(done, size);
    }
    if (cur.length > 0) BALLAST_TRY(finish());
    return idx;
}

Result<ChunkIndex> index_file(const std::string& path, uint64_t offset, uint64_t size,
                              const ChunkParams& p) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return fail_errno(errno, path);
    ::posix_fadvise(fd.get(), off_t(offset), off_t(size), POSIX_FADV_SEQUENTIAL);
    return build_index(
        size,
        [&](uint64_t off, uint8_t* buf, size_t n) -> Result<size_t> {
            const ssize_t r = ::pread(fd.get(), buf, n, off_t(offset + off));
            if (r < 0) return fail_errno(errno, path);
            return size_t(r);
        },
        p);
}

std::string serialize_index(const ChunkIndex& idx) {
    std::string out(kMagic, sizeof kMagic);
    out.reserve(kIndexHeaderSize + idx.chunks.size() * kIndexEntrySize);
    put_le<uint32_t>(out, kIndexVersion);
    put_le<uint32_t>(out, kHashSha256);
    put_le<uint32_t>(out, kChunkerBuzhash48);
    put_le<uint32_t>(out, idx.params.min);
    put_le<uint32_t>(out, idx.params.avg);
    put_le<uint32_t>(out, idx.params.max);
    put_le<uint64_t>(out, idx.image_size);
    put_le<uint64_t>(out, idx.chunks.size());
    for (const auto& c : idx.chunks) {
        put_le<uint32_t>(out, c.length);
        out.append(reinterpret_cast<const char*>(c.sha256.data()), c.sha256.size());
    }
    return out;
}

Result<ChunkIndex> parse_index(std::string_view b, std::string_view where) {
    if (b.size() > kMaxIndexSize)
        return fail(Errc::parse, "{}: {} bytes, more than the {} an index may have", where,
                    b.size(), kMaxIndexSize);
    if (b.size() < kIndexHeaderSize || std::memcmp(b.data(), kMagic, sizeof kMagic) != 0)
        return fail(Errc::parse, "{}: not a chunk index (bad magic)", where);
    if (const uint32_t v = le32(b, 8); v != kIndexVersion)
        return fail(Errc::unsupported,
                    "{}: index version {} is not supported (this agent reads {})", where, v,
                    kIndexVersion);
    if (const uint32_t v = le32(b, 12); v != kHashSha256)
        return fail(Errc::unsupported, "{}: chunk hash {} is not supported (1 = SHA-256)", where,
                    v);
    if (const uint32_t v = le32(b, 16); v != kChunkerBuzhash48)
        return fail(Errc::unsupported, "{}: chunker {} is not supported (1 = buzhash48)", where, v);
    ChunkIndex idx;
    idx.params = {le32(b, 20), le32(b, 24), le32(b, 28)};
    BALLAST_TRY_CTX(check_params(idx.params), "{}", where);
    idx.image_size = le64(b, 32);
    const uint64_t count = le64(b, 40);
    if (count > (b.size() - kIndexHeaderSize) / kIndexEntrySize ||
        kIndexHeaderSize + count * kIndexEntrySize != b.size())
        return fail(Errc::parse, "{}: {} chunks do not fit its {} bytes", where, count, b.size());
    if (idx.image_size == 0 || count == 0)
        return fail(Errc::parse, "{}: an index of an empty image", where);
    idx.chunks.reserve(size_t(count));
    uint64_t offset = 0;
    for (uint64_t i = 0; i < count; ++i) {
        const size_t at = kIndexHeaderSize + size_t(i) * kIndexEntrySize;
        Chunk c;
        c.offset = offset;
        c.length = le32(b, at);
        std::memcpy(c.sha256.data(), b.data() + at + 4, c.sha256.size());
        const bool last = i + 1 == count;
        if (c.length == 0 || c.length > idx.params.max || (!last && c.length < idx.params.min))
            return fail(Errc::parse, "{}: chunk {} is {} bytes, outside {}..{}", where, i, c.length,
                        idx.params.min, idx.params.max);
        offset += c.length;
        if (offset > idx.image_size)
            return fail(Errc::parse, "{}: chunks run past the image's {} bytes at chunk {}", where,
                        idx.image_size, i);
        idx.chunks.push_back(c);
    }
    if (offset != idx.image_size)
        return fail(Errc::parse, "{}: chunks cover {} bytes of the image's {}", where, offset,
                    idx.image_size);
    return idx;
}

}  // namespace ballast::update
