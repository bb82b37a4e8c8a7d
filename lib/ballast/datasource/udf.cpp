#include "ballast/datasource/udf.hpp"

#include <array>
#include <vector>

#include <fmt/format.h>

#include "ballast/core/bytes.hpp"

// A unity build puts this file beside the other datasource files: its names live apart.
namespace ballast::datasource::udf_format {
namespace {

// Descriptor tag identifiers (ECMA-167 3/7.2.1, 4/7.2.1).
enum Tag : uint16_t {
    kAnchor = 2,
    kPointer = 3,
    kPartition = 5,
    kLogicalVolume = 6,
    kTerminating = 8,
    kFileSet = 256,
    kFileId = 257,
    kAllocExtent = 258,
    kIndirect = 259,
    kFileEntry = 261,
    kExtFileEntry = 266,
};

// ICB file types (4/14.6.6) this reader cares about.
constexpr uint8_t kTypeDirectory = 4, kTypeRegular = 5;

// Bounds: a provisioning DVD holds a handful of small files; anything past these is a broken or
// hostile volume, refused before it costs memory or time.
constexpr size_t kMaxVdsBlocks = 64;
constexpr size_t kMaxMaps = 8;
constexpr size_t kMaxExtents = 4096;
constexpr size_t kMaxAedHops = 64;
constexpr size_t kMaxIndirect = 8;
constexpr size_t kMaxDirectory = 1u << 20;
constexpr size_t kMaxDepth = 16;

// CRC-ITU-T (x^16 + x^12 + x^5 + 1, initial 0) over a descriptor's body (7.2.6).
constexpr std::array<uint16_t, 256> kCrcTable = [] {
    std::array<uint16_t, 256> t{};
    for (unsigned i = 0; i < 256; ++i) {
        uint16_t c = uint16_t(i << 8);
        for (int b = 0; b < 8; ++b)
            c = uint16_t((c & 0x8000) ? (c << 1) ^ 0x1021 : c << 1);
        t[i] = c;
    }
    return t;
}();

uint16_t crc_itu(std::string_view b) {
    uint16_t crc = 0;
    for (unsigned char c : b)
        crc = uint16_t((crc << 8) ^ kCrcTable[((crc >> 8) ^ c) & 0xff]);
    return crc;
}

// A descriptor's tag (16 bytes), checked: checksum, CRC over what the buffer holds, and (when
// `location` is given) the block it says it was written to. `what` names it in errors.
Result<uint16_t> check_tag(std::string_view d, std::optional<uint32_t> location,
                           std::string_view what) {
    if (d.size() < 16) return fail(Errc::parse, "{}: truncated descriptor", what);
    uint8_t sum = 0;
    for (size_t i = 0; i < 16; ++i)
        if (i != 4) sum = uint8_t(sum + uint8_t(d[i]));
    if (sum != uint8_t(d[4])) return fail(Errc::parse, "{}: bad descriptor tag checksum", what);
    const uint16_t crc_len = le16(d, 10);
    if (size_t(crc_len) + 16 > d.size())
        return fail(Errc::parse, "{}: descriptor CRC length {} runs past it", what, crc_len);
    if (crc_itu(d.substr(16, crc_len)) != le16(d, 8))
        return fail(Errc::parse, "{}: bad descriptor CRC", what);
    if (location && le32(d, 12) != *location)
        return fail(Errc::parse, "{}: descriptor claims block {}, found at {}", what, le32(d, 12),
                    *location);
    return le16(d, 0);
}

// Where a block lives: logical block `lbn` of the partition referenced as `part`.
struct LbAddr {
    uint32_t lbn = 0;
    uint16_t part = 0;
};
struct Extent {
    uint32_t length = 0;  // bytes
    uint8_t kind = 0;     // 0 recorded, 1 allocated only, 2 neither (both read as zeros)
    LbAddr at;
};

LbAddr lb_addr(std::string_view b, size_t off) {
    return {le32(b, off), le16(b, off + 4)};
}

// OSTA compressed Unicode (UDF 2.1.1): 8-bit or 16-bit big-endian code units after an id
// byte, as UTF-8; nullopt for anything else.
std::optional<std::string> cs0_to_utf8(std::string_view d) {
    if (d.empty()) return std::nullopt;
    const uint8_t id = uint8_t(d[0]);
    const bool wide = id == 16 || id == 255;
    if (!wide && id != 8 && id != 254) return std::nullopt;
    d.remove_prefix(1);
    if (wide && d.size() % 2) return std::nullopt;
    std::string out;
    auto put = [&](uint32_t cp) {
        if (cp < 0x80) {
            out.push_back(char(cp));
        } else if (cp < 0x800) {
            out.push_back(char(0xc0 | (cp >> 6)));
            out.push_back(char(0x80 | (cp & 0x3f)));
        } else if (cp < 0x10000) {
            out.push_back(char(0xe0 | (cp >> 12)));
            out.push_back(char(0x80 | ((cp >> 6) & 0x3f)));
            out.push_back(char(0x80 | (cp & 0x3f)));
        } else {
            out.push_back(char(0xf0 | (cp >> 18)));
            out.push_back(char(0x80 | ((cp >> 12) & 0x3f)));
            out.push_back(char(0x80 | ((cp >> 6) & 0x3f)));
            out.push_back(char(0x80 | (cp & 0x3f)));
        }
    };
    for (size_t i = 0; i < d.size();) {
        if (!wide) {
            put(uint8_t(d[i++]));
            continue;
        }
        uint32_t u = (uint32_t(uint8_t(d[i])) << 8) | uint8_t(d[i + 1]);
        i += 2;
        if (u >= 0xd800 && u < 0xdc00 && i + 1 < d.size()) {
            const uint32_t lo = (uint32_t(uint8_t(d[i])) << 8) | uint8_t(d[i + 1]);
            if (lo >= 0xdc00 && lo < 0xe000) {
                u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
                i += 2;
            }
        }
        put(u >= 0xd800 && u < 0xe000 ? 0xfffd : u);
    }
    return out;
}

// A File Entry or Extended File Entry, reduced to what reading its data needs.
struct Node {
    uint8_t type = 0;
    uint64_t length = 0;
    std::optional<std::string> embedded;  // the data itself, recorded inside the entry
    std::vector<Extent> extents;
};

class UdfVolume {
  public:
    UdfVolume(const ReadAt& read, uint64_t size) : read_(read), size_(size) {}

    Status open() {
        auto anchor = BALLAST_TRY(find_anchor());
        // The main sequence, then its reserve copy (3/8.4.2.1).
        auto main = read_sequence(le32(anchor, 20), le32(anchor, 16));
        if (!main) {
            auto reserve = read_sequence(le32(anchor, 28), le32(anchor, 24));
            if (!reserve) return std::unexpected(std::move(main.error()));
        }
        return {};
    }

    // The root directory's ICB, from the file set descriptor.
    Result<LbAddr> root() {
        auto fsd = BALLAST_TRY(read_descriptor(fsd_, "file set descriptor"));
        if (BALLAST_TRY(check_tag(fsd, fsd_.lbn, "file set descriptor")) != kFileSet)
            return fail(Errc::parse, "no file set descriptor where the logical volume points");
        return lb_addr(fsd, 404);
    }

    Result<Node> node(LbAddr icb, std::string_view what) {
        for (size_t hop = 0; hop <= kMaxIndirect; ++hop) {
            auto d = BALLAST_TRY(read_descriptor(icb, what));
            const uint16_t tag = BALLAST_TRY(check_tag(d, icb.lbn, what));
            if (tag == kIndirect) {  // strategy 4096: the entry moved
                if (d.size() < 52) return fail(Errc::parse, "{}: truncated indirect entry", what);
                icb = lb_addr(d, 40);
                continue;
            }
            if (tag != kFileEntry && tag != kExtFileEntry)
                return fail(Errc::parse, "{}: not a file entry (tag {})", what, tag);
            return parse_entry(d, tag == kExtFileEntry, icb.part, what);
        }
        return fail(Errc::parse, "{}: more than {} indirect entries", what, kMaxIndirect);
    }

    // A node's data, at most `max` bytes (else an error).
    Result<std::string> data(const Node& n, size_t max, std::string_view what) {
        if (n.length > max)
            return fail(Errc::invalid_argument, "{}: {} bytes, more than {}", what, n.length, max);
        if (n.embedded) {
            if (n.embedded->size() < n.length)
                return fail(Errc::parse, "{}: embedded data shorter than the file", what);
            return n.embedded->substr(0, size_t(n.length));
        }
        std::string out;
        out.reserve(size_t(n.length));
        for (const auto& e : n.extents) {
            if (out.size() >= n.length) break;
            const size_t want = size_t(std::min<uint64_t>(e.length, n.length - out.size()));
            if (e.kind != 0) {
                out.append(want, '\0');
                continue;
            }
            BALLAST_TRY(append_run(out, e.at, want, what));
        }
        if (out.size() < n.length)
            return fail(Errc::parse, "{}: its extents are shorter than the file", what);
        return out;
    }

  private:
    struct Map {
        uint16_t partition = 0;          // the partition descriptor's number
        uint32_t start = 0, length = 0;  // in blocks on the volume
    };

    Result<std::string> read(uint64_t off, size_t len, std::string_view what) {
        if (off > size_ || len > size_ - off)
            return fail(Errc::parse, "{}: block past the end of the volume", what);
        auto r = read_(off, len);
        if (!r) return std::unexpected(std::move(r.error()).context(std::string(what)));
        if (r->size() != len) return fail(Errc::io, "{}: short read", what);
        return r;
    }

    // The anchor volume descriptor pointer: at sector 256, else at the last sector or 256
    // before it (3/8.4.2.1), for the sector sizes discs and disk images use.
    Result<std::string> find_anchor() {
        std::optional<Error> unreadable;
        for (uint32_t bs : {2048u, 512u, 4096u, 1024u}) {
            const uint64_t n = size_ / bs;
            for (uint64_t sector : {uint64_t(256), n - 1, n - 257}) {
                if (n < 257 || sector >= n) continue;
                // Drives often fail reads near a disc's end: one failing place is no verdict.
                auto d = read(sector * bs, 512, "anchor");
                if (!d) {
                    if (!unreadable) unreadable = std::move(d.error());
                    continue;
                }
                auto tag = check_tag(*d, uint32_t(sector), "anchor");
                if (tag && *tag == kAnchor) {
                    bs_ = bs;
                    return d;
                }
            }
        }
        if (unreadable) return std::unexpected(std::move(*unreadable));
        return fail(Errc::parse, "no UDF anchor volume descriptor (not a UDF volume)");
    }

    Status read_sequence(uint32_t location, uint32_t length) {
        struct Pd {
            uint16_t number;
            uint32_t start, length;
        };
        std::vector<Pd> pds;
        std::optional<std::string> lvd;
        const size_t blocks = std::min<size_t>(length / bs_, kMaxVdsBlocks);
        for (size_t i = 0; i < blocks; ++i) {
            const uint64_t sector = uint64_t(location) + i;
            if (sector > UINT32_MAX) break;
            auto d = BALLAST_TRY(read(sector * bs_, bs_, "volume descriptor"));
            if (le16(d, 0) == 0) break;  // unrecorded: the sequence ended without a terminator
            const uint16_t tag = BALLAST_TRY(check_tag(d, uint32_t(sector), "volume descriptor"));
            if (tag == kTerminating) break;
            if (tag == kPointer)
                return fail(Errc::unsupported, "a volume descriptor sequence in several extents");
            if (tag == kPartition) {
                if (pds.size() >= kMaxMaps) return fail(Errc::parse, "too many partitions");
                pds.push_back({le16(d, 22), le32(d, 188), le32(d, 192)});
            }
            // The last one wins: a later copy in the sequence supersedes (3/8.4.3).
            if (tag == kLogicalVolume) lvd = std::move(d);
        }
        if (!lvd || pds.empty())
            return fail(Errc::parse, "no logical volume or partition descriptor");
        const std::string_view l = *lvd;
        if (le32(l, 212) != bs_)
            return fail(Errc::unsupported, "logical block size {} on {}-byte sectors", le32(l, 212),
                        bs_);
        fsd_ = lb_addr(l, 252);
        const uint32_t table = le32(l, 264), count = le32(l, 268);
        if (count == 0 || count > kMaxMaps || size_t(table) > l.size() - 440)
            return fail(Errc::parse, "a partition map table of {} bytes, {} maps", table, count);
        maps_.clear();
        for (size_t off = 440, i = 0; i < count; ++i) {
            if (off + 2 > 440 + table) return fail(Errc::parse, "partition map table truncated");
            const uint8_t type = uint8_t(l[off]), len = uint8_t(l[off + 1]);
            if (len < 6 || off + len > 440 + table)
                return fail(Errc::parse, "partition map {} has length {}", i, len);
            if (type == 2 && len >= 28) {
                // UDF 2.50's metadata partition, and the sparable and virtual (VAT) ones of
                // rewritable and write-once discs: not what a read-only provisioning DVD uses.
                const auto ident = l.substr(off + 5, 23);
                return fail(Errc::unsupported, "a UDF volume with a {} map",
                            ident.substr(0, ident.find('\0')));
            }
            if (type != 1) return fail(Errc::parse, "partition map {} of unknown type {}", i, type);
            Map m{le16(l, off + 4)};
            bool found = false;
            for (const auto& p : pds)
                if (p.number == m.partition) {
                    m.start = p.start;
                    m.length = p.length;
                    found = true;
                }
            if (!found) return fail(Errc::parse, "no partition {} for map {}", m.partition, i);
            maps_.push_back(m);
            off += len;
        }
        return {};
    }

    // The byte offset on the volume of block `a`.
    Result<uint64_t> locate(LbAddr a, std::string_view what) const {
        if (a.part >= maps_.size())
            return fail(Errc::parse, "{}: partition reference {} of {}", what, a.part,
                        maps_.size());
        const Map& m = maps_[a.part];
        if (a.lbn >= m.length)
            return fail(Errc::parse, "{}: block {} past partition {} ({} blocks)", what, a.lbn,
                        m.partition, m.length);
        return (uint64_t(m.start) + a.lbn) * bs_;
    }

    Result<std::string> read_descriptor(LbAddr a, std::string_view what) {
        return read(BALLAST_TRY(locate(a, what)), bs_, what);
    }

    // `len` bytes from block `a` on, read in runs of blocks that lie next to each other.
    Status append_run(std::string& out, LbAddr a, size_t len, std::string_view what) {
        uint64_t run_start = 0, run_len = 0;
        for (size_t done = 0; done < len;) {
            const size_t chunk = std::min<size_t>(bs_, len - done);
            if (a.lbn == UINT32_MAX) return fail(Errc::parse, "{}: extent past block 2^32", what);
            const uint64_t at = BALLAST_TRY(locate(a, what));
            if (run_len && at != run_start + run_len) {
                out += BALLAST_TRY(read(run_start, size_t(run_len), what));
                run_len = 0;
            }
            if (!run_len) run_start = at;
            run_len += chunk;
            done += chunk;
            ++a.lbn;
        }
        if (run_len) out += BALLAST_TRY(read(run_start, size_t(run_len), what));
        return {};
    }

    Result<Node> parse_entry(std::string_view d, bool extended, uint16_t part,
                             std::string_view what) {
        const size_t head = extended ? 216 : 176;
        if (d.size() < head) return fail(Errc::parse, "{}: truncated file entry", what);
        Node n;
        n.type = uint8_t(d[27]);
        n.length = le64(d, 56);
        const uint32_t ea = le32(d, head - 8), ad = le32(d, head - 4);
        if (size_t(ea) > d.size() - head || size_t(ad) > d.size() - head - ea)
            return fail(Errc::parse, "{}: attributes and descriptors run past the entry", what);
        const auto ads = d.substr(head + ea, ad);
        const unsigned form = le16(d, 34) & 7;
        if (form == 3) {
            n.embedded = std::string(ads);
            return n;
        }
        BALLAST_TRY(parse_ads(ads, form, part, n.extents, what));
        return n;
    }

    // Allocation descriptors: short (8 bytes, in the entry's own partition) or long (16);
    // an extent of kind 3 continues the list in an Allocation Extent Descriptor.
    Status parse_ads(std::string_view ads, unsigned form, uint16_t part, std::vector<Extent>& out,
                     std::string_view what) {
        if (form != 0 && form != 1)
            return fail(Errc::unsupported, "{}: extended allocation descriptors", what);
        const size_t step = form == 0 ? 8 : 16;
        std::string next;  // owns the current continuation block
        for (size_t hops = 0;;) {
            bool continued = false;
            for (size_t off = 0; off + step <= ads.size(); off += step) {
                const uint32_t raw = le32(ads, off);
                const uint32_t length = raw & 0x3fffffff;
                if (length == 0) break;  // the list ends early
                const LbAddr at =
                    form == 0 ? LbAddr{le32(ads, off + 4), part} : lb_addr(ads, off + 4);
                const uint8_t kind = uint8_t(raw >> 30);
                if (kind == 3) {
                    if (++hops > kMaxAedHops)
                        return fail(Errc::parse, "{}: more than {} allocation extents", what,
                                    kMaxAedHops);
                    next = BALLAST_TRY(read_descriptor(at, what));
                    if (BALLAST_TRY(check_tag(next, at.lbn, what)) != kAllocExtent)
                        return fail(Errc::parse, "{}: not an allocation extent descriptor", what);
                    const uint32_t len = le32(next, 20);
                    if (size_t(len) > next.size() - 24)
                        return fail(Errc::parse, "{}: allocation extent runs past its block", what);
                    ads = std::string_view(next).substr(24, len);
                    continued = true;
                    break;
                }
                if (out.size() >= kMaxExtents)
                    return fail(Errc::parse, "{}: more than {} extents", what, kMaxExtents);
                out.push_back({length, kind, at});
            }
            if (!continued) return {};
        }
    }

    const ReadAt& read_;
    uint64_t size_;
    uint32_t bs_ = 2048;
    LbAddr fsd_;
    std::vector<Map> maps_;
};

// The entry named `name` in a directory's data (File Identifier Descriptors, 4/14.4).
Result<std::optional<std::pair<LbAddr, bool>>> lookup(std::string_view dir, std::string_view name,
                                                      std::string_view what) {
    for (size_t off = 0; off + 38 <= dir.size();) {
        const auto fid = dir.substr(off);
        if (le16(fid, 0) != kFileId)
            return fail(Errc::parse, "{}: not a file identifier at byte {}", what, off);
        const uint8_t flags = uint8_t(fid[18]), name_len = uint8_t(fid[19]);
        const uint16_t iu_len = le16(fid, 36);
        const size_t len = 38 + size_t(iu_len) + name_len;
        if (len > fid.size())
            return fail(Errc::parse, "{}: file identifier at byte {} runs past it", what, off);
        const size_t padded = (len + 3) & ~size_t(3);
        BALLAST_TRY(check_tag(fid.substr(0, padded), std::nullopt, what));
        const bool deleted = flags & 4, parent = flags & 8;
        if (!deleted && !parent)
            if (auto n = cs0_to_utf8(fid.substr(38 + iu_len, name_len)); n && *n == name)
                return std::optional<std::pair<LbAddr, bool>>({lb_addr(fid, 24), bool(flags & 2)});
        off += padded;
    }
    return std::optional<std::pair<LbAddr, bool>>();
}

}  // namespace
}  // namespace ballast::datasource::udf_format

namespace ballast::datasource {

Result<std::optional<std::string>> udf_read_file(const ReadAt& read, uint64_t size,
                                                 std::string_view path, size_t max_bytes) {
    using namespace udf_format;
    UdfVolume v(read, size);
    BALLAST_TRY(v.open());
    LbAddr at = BALLAST_TRY(v.root());
    std::vector<std::string_view> parts;
    for (size_t i = 0; i <= path.size();) {
        size_t j = path.find('/', i);
        if (j == std::string_view::npos) j = path.size();
        if (j > i) parts.push_back(path.substr(i, j - i));
        i = j + 1;
    }
    if (parts.empty() || parts.size() > kMaxDepth)
        return fail(Errc::invalid_argument, "{}: not a file path", path);
    for (size_t i = 0; i < parts.size(); ++i) {
        auto dir = BALLAST_TRY(v.node(at, "directory"));
        if (dir.type != kTypeDirectory) return std::optional<std::string>();
        const auto entries = BALLAST_TRY(v.data(dir, kMaxDirectory, "directory"));
        auto hit = BALLAST_TRY(lookup(entries, parts[i], "directory"));
        if (!hit) return std::optional<std::string>();
        at = hit->first;
        const bool last = i + 1 == parts.size();
        if (hit->second == last) return std::optional<std::string>();  // a file/dir mismatch
    }
    const std::string what(path);
    auto file = BALLAST_TRY(v.node(at, what));
    if (file.type != kTypeRegular && file.type != 0) return std::optional<std::string>();
    return std::optional<std::string>(BALLAST_TRY(v.data(file, max_bytes, what)));
}

}  // namespace ballast::datasource
