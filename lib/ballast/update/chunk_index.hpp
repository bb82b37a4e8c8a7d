// The chunk index of a slot image (rootfs.bcidx): where content-defined chunks begin and end, and
// the SHA-256 of each. A node compares the index of the image it is offered with what its slots
// already hold and fetches only the chunks it lacks (issue 17). Cut points come from a rolling
// hash over the last 48 bytes (buzhash, as casync and desync do), so an insertion or deletion moves
// only the cuts next to it and every later chunk keeps its identity.
//
// The file is plain little-endian binary, bounded and versioned (docs/bundles.md):
//   magic "BCIDX\r\n\x1a", u32 version (1), u32 hash (1 = SHA-256), u32 chunker (1 = buzhash48
//   v1), u32 min, u32 avg, u32 max, u64 image size, u64 count,
//   then count x { u32 length, 32-byte SHA-256 }.
// Lengths rather than offsets: unchanged runs of chunks stay byte-identical from release to
// release.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ballast/core/result.hpp"

namespace ballast::update {

inline constexpr const char* kIndexName = "rootfs.bcidx";
inline constexpr uint32_t kIndexVersion = 1;
inline constexpr size_t kIndexHeaderSize = 48;
inline constexpr size_t kIndexEntrySize = 36;
// An index larger than this is refused before it is read (about 1.8 million chunks: a 30 GB
// image at the default sizes).
inline constexpr uint64_t kMaxIndexSize = 64u << 20;

struct ChunkParams {
    // Chosen by measurement on a 157 MB zstd squashfs pair (../shared/anchors/README.md,
    // section 5; docs/performance.md): 16 KiB average chunks fetch 30 % fewer bytes than
    // casync's 64 KiB for a 2.3 % file change, for an index of 0.22 % of the image.
    uint32_t min = 4u << 10;
    uint32_t avg = 16u << 10;
    uint32_t max = 64u << 10;
    friend bool operator==(const ChunkParams&, const ChunkParams&) = default;
};
// 64 <= min <= avg <= max <= 16 MiB, min < max.
[[nodiscard]] Status check_params(const ChunkParams& p);

using ChunkId = std::array<uint8_t, 32>;

struct Chunk {
    uint64_t offset = 0;  // derived from the lengths before it
    uint32_t length = 0;
    ChunkId sha256{};
};

struct ChunkIndex {
    ChunkParams params;
    uint64_t image_size = 0;
    std::vector<Chunk> chunks;
};

// Finds cut points in a stream fed in pieces of any size; pure, no I/O.
class Chunker {
  public:
    explicit Chunker(ChunkParams p);
    // How many bytes of `data` belong to the current chunk. When that is less than data.size()
    // or `cut()` is true, the chunk ends after them; the caller starts the next chunk with the
    // rest of `data`.
    [[nodiscard]] size_t scan(std::span<const uint8_t> data);
    [[nodiscard]] bool cut() const { return cut_; }

  private:
    ChunkParams p_;
    uint32_t discriminator_;
    uint32_t h_ = 0;
    std::array<uint8_t, 48> window_{};
    size_t pos_ = 0;  // into window_
    uint64_t len_ = 0;
    bool cut_ = false;
};

// Chunks `size` bytes read by `read(offset, buf, n)` (which returns the bytes read, 0 only at an
// unexpected end). `progress(done, total)`.
using RangeReader = std::function<Result<size_t>(uint64_t offset, uint8_t* buf, size_t n)>;
[[nodiscard]] Result<ChunkIndex> build_index(
    uint64_t size, const RangeReader& read, const ChunkParams& p = {},
    const std::function<void(uint64_t, uint64_t)>& progress = {});
// The same over [offset, offset+size) of a file or block device.
[[nodiscard]] Result<ChunkIndex> index_file(const std::string& path, uint64_t offset, uint64_t size,
                                            const ChunkParams& p = {});

[[nodiscard]] std::string serialize_index(const ChunkIndex& idx);
// Every bound checked: header fields, count against the bytes, each length within min..max (the
// last may be shorter than min), lengths summing to the image size. `where` names the file in
// messages.
[[nodiscard]] Result<ChunkIndex> parse_index(std::string_view bytes, std::string_view where);

}  // namespace ballast::update
