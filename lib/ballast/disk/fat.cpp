#include "ballast/disk/fat.hpp"

#include <algorithm>
#include <cctype>
#include <optional>

#include "ballast/core/bytes.hpp"
#include "ballast/core/failpoint.hpp"
#include "ballast/core/text.hpp"

namespace ballast::disk {
Result<FatVolume> FatVolume::open(const ByteRange& range) {
    FatVolume v(range);
    std::string bs(512, '\0');
    BALLAST_TRY_CTX(range.read_at(bs.data(), bs.size(), 0), "FAT boot sector");
    if (uint8_t(bs[510]) != 0x55 || uint8_t(bs[511]) != 0xAA)
        return fail(Errc::parse, "{}: no FAT boot sector signature", range.name());
    v.bytes_per_sector_ = le16(bs, 11);
    v.sectors_per_cluster_ = uint8_t(bs[13]);
    v.reserved_ = le16(bs, 14);
    v.num_fats_ = uint8_t(bs[16]);
    v.root_entries_ = le16(bs, 17);
    v.total_sectors_ = le16(bs, 19) ? le16(bs, 19) : le32(bs, 32);
    v.fat_sectors_ = le16(bs, 22) ? le16(bs, 22) : le32(bs, 36);
    const uint32_t bps = v.bytes_per_sector_;
    if ((bps != 512 && bps != 1024 && bps != 2048 && bps != 4096) || v.sectors_per_cluster_ == 0 ||
        (v.sectors_per_cluster_ & (v.sectors_per_cluster_ - 1)) != 0 || v.num_fats_ == 0 ||
        v.fat_sectors_ == 0 || v.reserved_ == 0)
        return fail(Errc::parse, "{}: not a valid FAT filesystem", range.name());
    const uint32_t root_sectors = (v.root_entries_ * 32 + bps - 1) / bps;
    const uint64_t meta =
        uint64_t(v.reserved_) + uint64_t(v.num_fats_) * v.fat_sectors_ + root_sectors;
    if (meta >= v.total_sectors_ || uint64_t(v.total_sectors_) * bps > range.size())
        return fail(Errc::parse, "{}: FAT geometry does not fit the partition", range.name());
    v.clusters_ = uint32_t((v.total_sectors_ - meta) / v.sectors_per_cluster_);
    v.bits_ = v.clusters_ < 4085 ? 12 : v.clusters_ < 65525 ? 16 : 32;
    v.fat_offset_ = uint64_t(v.reserved_) * bps;
    v.root_offset_ = v.fat_offset_ + uint64_t(v.num_fats_) * v.fat_sectors_ * bps;
    v.data_offset_ = v.root_offset_ + uint64_t(root_sectors) * bps;
    if (v.bits_ == 32) v.root_cluster_ = le32(bs, 44);
    return v;
}

uint64_t FatVolume::cluster_offset(uint32_t c) const {
    return data_offset_ + uint64_t(c - 2) * sectors_per_cluster_ * bytes_per_sector_;
}

Result<uint32_t> FatVolume::next_cluster(uint32_t c) const {
    uint64_t off;
    uint8_t buf[4] = {};
    if (bits_ == 12)
        off = fat_offset_ + c + c / 2;
    else
        off = fat_offset_ + uint64_t(c) * (bits_ / 8);
    BALLAST_TRY(range_->read_at(buf, bits_ == 32 ? 4 : 2, off));
    uint32_t v = uint32_t(buf[0]) | (uint32_t(buf[1]) << 8);
    if (bits_ == 12) return (c & 1) ? v >> 4 : v & 0xFFF;
    if (bits_ == 16) return v;
    return (v | (uint32_t(buf[2]) << 16) | (uint32_t(buf[3]) << 24)) & 0x0FFFFFFF;
}

Result<std::vector<uint32_t>> FatVolume::chain(uint32_t first) const {
    const uint32_t eoc = bits_ == 12 ? 0xFF8 : bits_ == 16 ? 0xFFF8 : 0x0FFFFFF8;
    std::vector<uint32_t> out;
    uint32_t c = first;
    while (c >= 2 && c < eoc) {
        if (c >= clusters_ + 2 || out.size() > clusters_)
            return fail(Errc::parse, "{}: broken FAT cluster chain", range_->name());
        out.push_back(c);
        c = BALLAST_TRY(next_cluster(c));
    }
    return out;
}

Result<std::string> FatVolume::read_dir(uint32_t cluster) const {
    std::string data;
    if (cluster == 0 && bits_ != 32) {
        data.resize(size_t(root_entries_) * 32);
        BALLAST_TRY(range_->read_at(data.data(), data.size(), root_offset_));
        return data;
    }
    const uint64_t csize = uint64_t(sectors_per_cluster_) * bytes_per_sector_;
    const auto clusters = BALLAST_TRY(chain(cluster == 0 ? root_cluster_ : cluster));
    for (uint32_t c : clusters) {
        std::string part(csize, '\0');
        BALLAST_TRY(range_->read_at(part.data(), part.size(), cluster_offset(c)));
        data += part;
    }
    return data;
}

namespace {

constexpr size_t kSlot = 32;
constexpr size_t kLfnChars[] = {1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30};
constexpr uint8_t kLfnAttr = 0x0F;
constexpr uint8_t kLastPiece = 0x40;
constexpr char kFree = char(0xE5);

// The checksum a long name's pieces carry of the short entry they belong to.
uint8_t short_checksum(std::string_view name11) {
    uint8_t sum = 0;
    for (char c : name11)
        sum = uint8_t(((sum & 1) << 7) + (sum >> 1) + uint8_t(c));
    return sum;
}

}  // namespace

std::vector<FatVolume::Entry> FatVolume::parse_dir(const std::string& data) {
    std::vector<Entry> out;
    // A long name counts only when its pieces run from the one marked last down to 1 with one
    // checksum, right before a short entry with that checksum: as Linux and EDK2 read it.
    std::string lfn;
    size_t lfn_start = 0;
    int next_ord = 0;  // the ordinal the next piece must have; 0 once piece 1 was read
    uint8_t lfn_sum = 0;
    bool lfn_ok = false;
    for (size_t o = 0; o + kSlot <= data.size(); o += kSlot) {
        const uint8_t first = uint8_t(data[o]);
        if (first == 0x00) break;
        if (first == 0xE5) {
            lfn_ok = false;
            continue;
        }
        const uint8_t attr = uint8_t(data[o + 11]);
        if (attr == kLfnAttr) {
            // As EDK2: ordinals 1..20 and nothing else in the byte but the last-piece flag; a
            // piece with a cluster is no piece.
            const int ord = first & ~kLastPiece;
            const uint8_t sum = uint8_t(data[o + 13]);
            const bool sane = ord >= 1 && ord <= 20 && le16(data, o + 26) == 0;
            if (first & kLastPiece) {
                lfn.clear();
                lfn_start = o;
                lfn_sum = sum;
                lfn_ok = sane;
            } else if (!lfn_ok || !sane || ord != next_ord || sum != lfn_sum) {
                lfn_ok = false;
                continue;
            }
            next_ord = ord - 1;
            std::string piece;
            for (size_t k : kLfnChars) {
                uint16_t ch = le16(data, o + k);
                if (ch == 0 || ch == 0xFFFF) break;
                piece += ch < 0x80 ? char(ch) : '?';
            }
            lfn = piece + lfn;
            continue;
        }
        const bool has_lfn =
            lfn_ok && next_ord == 0 && lfn_sum == short_checksum(data.substr(o, 11));
        lfn_ok = false;
        if (attr & 0x08) continue;  // volume label
        std::string base = data.substr(o, 8), ext = data.substr(o + 8, 3);
        if (base[0] == 0x05) base[0] = kFree;  // a name really starting with 0xE5
        while (!base.empty() && base.back() == ' ')
            base.pop_back();
        while (!ext.empty() && ext.back() == ' ')
            ext.pop_back();
        // Windows NT's case bits, which Linux and EDK2 honour: "notes.txt" is stored as a
        // short name with the base and extension marked lower case, and no long name.
        if (data[o + 12] & 0x08) base = ascii_lower(base);
        if (data[o + 12] & 0x10) ext = ascii_lower(ext);
        Entry e;
        e.name = has_lfn ? lfn : ext.empty() ? base : base + "." + ext;
        e.dir = attr & 0x10;
        e.cluster = (uint32_t(le16(data, o + 20)) << 16) | le16(data, o + 26);
        e.size = le32(data, o + 28);
        e.first_slot = has_lfn ? lfn_start : o;
        e.short_slot = o;
        e.short_name = data.substr(o, 11);
        if (e.name != "." && e.name != "..") out.push_back(std::move(e));
    }
    return out;
}

std::vector<size_t> FatVolume::orphan_pieces(const std::string& data,
                                             const std::vector<Entry>& entries) {
    std::vector<size_t> out;
    for (size_t o = 0; o + kSlot <= data.size() && data[o] != 0x00; o += kSlot) {
        if (data[o] == kFree || uint8_t(data[o + 11]) != kLfnAttr) continue;
        const bool owned = std::any_of(entries.begin(), entries.end(), [&](const Entry& e) {
            return o >= e.first_slot && o < e.short_slot;
        });
        if (!owned) out.push_back(o);
    }
    return out;
}

Result<size_t> FatVolume::free_orphans(std::string_view dir_path) const {
    const uint32_t dir = BALLAST_TRY(folder(dir_path));
    const std::string data = BALLAST_TRY(read_dir(dir));
    const auto orphans = orphan_pieces(data, parse_dir(data));
    for (size_t o : orphans) {
        const uint64_t at = BALLAST_TRY(dir_offset(dir, o));
        BALLAST_TRY(range_->write_at(&kFree, 1, at));
    }
    if (!orphans.empty()) BALLAST_TRY(range_->sync());
    return orphans.size();
}

std::vector<std::string> FatVolume::split(std::string_view path) {
    std::vector<std::string> parts;
    size_t i = 0;
    while (i < path.size()) {
        size_t j = path.find('/', i);
        if (j == std::string_view::npos) j = path.size();
        if (j > i) parts.emplace_back(path.substr(i, j - i));
        i = j + 1;
    }
    return parts;
}

Result<uint32_t> FatVolume::folder(std::string_view path) const {
    uint32_t dir = 0;
    for (const auto& part : split(path)) {
        const auto entries = parse_dir(BALLAST_TRY(read_dir(dir)));
        auto it = std::find_if(entries.begin(), entries.end(), [&](const Entry& e) {
            return ascii_lower(e.name) == ascii_lower(part);
        });
        if (it == entries.end())
            return fail(Errc::not_found, "{}: no {} on the FAT filesystem", range_->name(), path);
        if (!it->dir) return fail(Errc::not_found, "{}: {} is not a folder", range_->name(), part);
        dir = it->cluster;
    }
    return dir;
}

Result<std::vector<FatVolume::DirEntry>> FatVolume::list(std::string_view dir_path) const {
    const uint32_t dir = BALLAST_TRY(folder(dir_path));
    std::vector<DirEntry> out;
    for (const auto& e : parse_dir(BALLAST_TRY(read_dir(dir))))
        out.push_back({e.name, e.dir, e.size, e.cluster});
    return out;
}

Result<FatVolume::File> FatVolume::find(std::string_view path) const {
    auto parts = split(path);
    if (parts.empty()) return fail(Errc::invalid_argument, "FAT: empty path");
    const std::string leaf = parts.back();
    parts.pop_back();
    std::string parent;
    for (const auto& p : parts)
        parent += "/" + p;
    const uint32_t dir = BALLAST_TRY(folder(parent));
    const auto entries = parse_dir(BALLAST_TRY(read_dir(dir)));
    auto hit = std::find_if(entries.begin(), entries.end(), [&](const Entry& e) {
        return ascii_lower(e.name) == ascii_lower(leaf);
    });
    if (hit == entries.end())
        return fail(Errc::not_found, "{}: no {} on the FAT filesystem", range_->name(), path);
    if (hit->dir) return fail(Errc::invalid_argument, "{}: {} is a folder", range_->name(), path);
    return extents_of(hit->cluster, hit->size, path);
}

Result<FatVolume::File> FatVolume::extents_of(uint32_t cluster, uint32_t size,
                                              std::string_view what) const {
    File f;
    f.size = size;
    const uint64_t csize = uint64_t(sectors_per_cluster_) * bytes_per_sector_;
    uint64_t left = size;
    const auto clusters = BALLAST_TRY(chain(cluster));
    for (uint32_t c : clusters) {
        if (left == 0) break;
        uint64_t len = std::min(left, csize);
        uint64_t off = cluster_offset(c);
        if (!f.extents.empty() && f.extents.back().offset + f.extents.back().length == off)
            f.extents.back().length += len;
        else
            f.extents.push_back({off, len});
        left -= len;
    }
    if (left != 0)
        return fail(Errc::parse, "{}: {} is shorter on disk than its size", range_->name(), what);
    return f;
}

Result<std::string> FatVolume::read_range(std::string_view path, uint64_t offset,
                                          uint64_t length) const {
    return read_extents(BALLAST_TRY(find(path)), offset, length);
}

Result<std::string> FatVolume::read_entry(const DirEntry& e, uint64_t offset,
                                          uint64_t length) const {
    return read_extents(BALLAST_TRY(extents_of(e.cluster, e.size, e.name)), offset, length);
}

Result<std::string> FatVolume::read_extents(const File& f, uint64_t offset, uint64_t length) const {
    std::string out;
    uint64_t pos = 0;  // of the extent's start in the file
    for (const auto& e : f.extents) {
        const uint64_t from = std::max(offset, pos), to = std::min(offset + length, pos + e.length);
        if (from < to) {
            std::string part(to - from, '\0');
            BALLAST_TRY(range_->read_at(part.data(), part.size(), e.offset + (from - pos)));
            out += part;
        }
        pos += e.length;
    }
    return out;
}

Status FatVolume::drop_alias(std::string_view dir_path, std::string_view name) const {
    const uint32_t dir = BALLAST_TRY(folder(dir_path));
    const auto entries = parse_dir(BALLAST_TRY(read_dir(dir)));
    auto it = std::find_if(entries.begin(), entries.end(),
                           [&](const Entry& e) { return e.name == name; });
    if (it == entries.end())
        return fail(Errc::not_found, "{}: no {}/{}", range_->name(), dir_path, name);
    const bool aliased =
        it->cluster != 0 && !it->dir &&
        std::any_of(entries.begin(), entries.end(), [&](const Entry& e) {
            return &e != &*it && e.cluster == it->cluster && e.size == it->size && !e.dir;
        });
    if (!aliased)
        return fail(Errc::invalid_argument,
                    "{}: {}/{} is not a second name of another file's data; it is not dropped",
                    range_->name(), dir_path, name);
    return free_entry(dir, *it);
}

Status FatVolume::free_entry(uint32_t dir, const Entry& e) const {
    // The short entry first: one byte in one sector, after which the long-name pieces are
    // orphans every reader skips. The FAT is not touched: the data stays the other name's.
    std::vector<size_t> slots = {e.short_slot};
    for (size_t o = e.first_slot; o < e.short_slot; o += kSlot)
        slots.push_back(o);
    for (size_t o : slots) {
        const uint64_t at = BALLAST_TRY(dir_offset(dir, o));
        BALLAST_TRY(range_->write_at(&kFree, 1, at));
        BALLAST_TRY(range_->sync());
        failpoint("fat.free.short-entry");
    }
    return {};
}

Status FatVolume::rename(std::string_view dir_path, std::string_view from,
                         std::string_view to) const {
    if (to.empty() || to.size() > 255 || std::any_of(to.begin(), to.end(), [](char c) {
            return uint8_t(c) < 0x20 || uint8_t(c) >= 0x80 ||
                   std::string_view("\"*/:<>?\\|").find(c) != std::string_view::npos;
        }))
        return fail(Errc::invalid_argument, "FAT: {:?} is not a plain ASCII long name", to);
    const uint32_t dir = BALLAST_TRY(folder(dir_path));
    const std::string data = BALLAST_TRY(read_dir(dir));
    const auto entries = parse_dir(data);
    auto old = std::find_if(entries.begin(), entries.end(),
                            [&](const Entry& e) { return e.name == from; });
    if (old == entries.end())
        return fail(Errc::not_found, "{}: no {}/{}", range_->name(), dir_path, from);
    for (const auto& e : entries)
        if (ascii_lower(e.name) == ascii_lower(to))
            return fail(Errc::exists, "{}: {}/{} exists", range_->name(), dir_path, to);

    // A short name no other entry has: "BLST" and four hex digits, the extension's first three
    // characters. The long name is what every reader shows.
    std::string ext;
    if (auto dot = to.rfind('.'); dot != std::string_view::npos)
        ext = ascii_upper(std::string(to.substr(dot + 1, 3)));
    std::erase_if(ext, [](char c) { return !std::isalnum(uint8_t(c)); });
    ext.resize(3, ' ');
    std::string short_name;
    for (unsigned n = 0; n < 0x10000 && short_name.empty(); ++n) {
        std::string cand = fmt::format("BLST{:04X}", n) + ext;
        if (std::none_of(entries.begin(), entries.end(),
                         [&](const Entry& e) { return e.short_name == cand; }))
            short_name = cand;
    }
    if (short_name.empty())
        return fail(Errc::unsupported, "{}: {} has no free short name left", range_->name(),
                    dir_path);
    // The new entries: the pieces, last first, then a copy of the old short entry (same data,
    // attributes and times) under the new short name.
    const uint8_t sum = short_checksum(short_name);
    const size_t pieces = (to.size() + 12) / 13;
    std::string run;
    for (size_t p = pieces; p >= 1; --p) {
        std::string slot(kSlot, '\0');
        slot[0] = char(p | (p == pieces ? kLastPiece : 0));
        slot[11] = char(kLfnAttr);
        slot[13] = char(sum);
        for (size_t k = 0; k < 13; ++k) {
            const size_t i = (p - 1) * 13 + k;
            const uint16_t ch = i < to.size() ? uint8_t(to[i]) : i == to.size() ? 0 : 0xFFFF;
            slot[kLfnChars[k]] = char(ch & 0xFF);
            slot[kLfnChars[k] + 1] = char(ch >> 8);
        }
        run += slot;
    }
    std::string short_entry = data.substr(old->short_slot, kSlot);
    short_entry.replace(0, 11, short_name);
    short_entry[12] = 0;  // no case bits: the long name carries the case
    run += short_entry;

    // Free slots for it: deleted ones, or the end of the folder (which must stay ended).
    const size_t need = run.size() / kSlot;
    size_t at = std::string::npos, free_run = 0, end = data.size();
    for (size_t o = 0; o + kSlot <= data.size(); o += kSlot) {
        if (data[o] == 0x00) {
            end = o;
            break;
        }
        free_run = data[o] == kFree ? free_run + 1 : 0;
        if (free_run == need) {
            at = o + kSlot - need * kSlot;
            break;
        }
    }
    if (at == std::string::npos) {
        if (end + run.size() > data.size())
            return fail(Errc::unsupported,
                        "{}: {} has no room for another name (the folder is not extended)",
                        range_->name(), dir_path);
        at = end;
        // Past the old end: zeros over the run's slots and the one after it first, synced, so
        // that whatever lay there is never read as entries once the end marker is overwritten.
        const size_t span = std::min(run.size() + kSlot, data.size() - end) / kSlot;
        const std::string zeros(kSlot, '\0');
        for (size_t i = 0; i < span; ++i)
            if (data.compare(end + i * kSlot, kSlot, zeros) != 0) {
                const uint64_t off = BALLAST_TRY(dir_offset(dir, end + i * kSlot));
                BALLAST_TRY(range_->write_at(zeros.data(), kSlot, off));
            }
        BALLAST_TRY(range_->sync());
    }
    // Pieces, then the short entry that makes the name: each written and synced in its turn, so
    // a cut leaves the old name alone, or both names (an alias the caller drops), never none.
    for (size_t i = 0; i < need; ++i) {
        const uint64_t off = BALLAST_TRY(dir_offset(dir, at + i * kSlot));
        BALLAST_TRY(range_->write_at(run.data() + i * kSlot, kSlot, off));
        if (i + 2 == need) {
            BALLAST_TRY(range_->sync());
            failpoint("fat.rename.pieces");
        }
    }
    BALLAST_TRY(range_->sync());
    failpoint("fat.rename.both-names");
    return free_entry(dir, *old);
}

Result<uint64_t> FatVolume::dir_offset(uint32_t dir, size_t offset) const {
    if (dir == 0 && bits_ != 32) return root_offset_ + offset;
    const uint64_t csize = uint64_t(sectors_per_cluster_) * bytes_per_sector_;
    const auto clusters = BALLAST_TRY(chain(dir == 0 ? root_cluster_ : dir));
    if (offset / csize >= clusters.size())
        return fail(Errc::parse, "{}: directory shorter than expected", range_->name());
    return cluster_offset(clusters[offset / csize]) + offset % csize;
}

Result<std::string> FatVolume::read(std::string_view path) const {
    auto f = BALLAST_TRY(find(path));
    std::string out;
    out.reserve(f.size);
    for (const auto& e : f.extents) {
        std::string part(e.length, '\0');
        BALLAST_TRY(range_->read_at(part.data(), part.size(), e.offset));
        out += part;
    }
    return out;
}

Status FatVolume::write_in_place(std::string_view path, std::string_view data) const {
    auto f = BALLAST_TRY(find(path));
    if (data.size() != f.size)
        return fail(Errc::invalid_argument,
                    "{}: {} is {} bytes; an in-place write of {} bytes would not fit",
                    range_->name(), path, f.size, data.size());
    size_t done = 0;
    for (const auto& e : f.extents) {
        BALLAST_TRY(range_->write_at(data.data() + done, e.length, e.offset));
        done += e.length;
    }
    return range_->sync();
}

}  // namespace ballast::disk
