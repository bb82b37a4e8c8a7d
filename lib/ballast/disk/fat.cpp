#include "ballast/disk/fat.hpp"

#include <algorithm>
#include <cctype>
#include <optional>

#include "ballast/core/bytes.hpp"
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

std::vector<FatVolume::Entry> FatVolume::parse_dir(const std::string& data) {
    std::vector<Entry> out;
    std::string lfn;
    size_t lfn_start = 0;
    for (size_t o = 0; o + 32 <= data.size(); o += 32) {
        const uint8_t first = uint8_t(data[o]);
        if (first == 0x00) break;
        if (first == 0xE5) {
            lfn.clear();
            continue;
        }
        const uint8_t attr = uint8_t(data[o + 11]);
        if (attr == 0x0F) {  // long name piece: 13 UCS-2 characters, pieces come last-first
            std::string piece;
            for (size_t k : {1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30}) {
                uint16_t ch = le16(data, o + k);
                if (ch == 0 || ch == 0xFFFF) break;
                piece += ch < 0x80 ? char(ch) : '?';
            }
            if (lfn.empty()) lfn_start = o;
            lfn = piece + lfn;
            continue;
        }
        if (attr & 0x08) {  // volume label
            lfn.clear();
            continue;
        }
        std::string base = data.substr(o, 8), ext = data.substr(o + 8, 3);
        while (!base.empty() && base.back() == ' ')
            base.pop_back();
        while (!ext.empty() && ext.back() == ' ')
            ext.pop_back();
        // Windows NT's case bits, which Linux and EDK2 honour: "notes.txt" is stored as a
        // short name with the base and extension marked lower case, and no long name.
        if (data[o + 12] & 0x08) base = ascii_lower(base);
        if (data[o + 12] & 0x10) ext = ascii_lower(ext);
        Entry e;
        e.name = lfn.empty() ? (ext.empty() ? base : base + "." + ext) : lfn;
        e.dir = attr & 0x10;
        e.cluster = (uint32_t(le16(data, o + 20)) << 16) | le16(data, o + 26);
        e.size = le32(data, o + 28);
        e.first_slot = lfn.empty() ? o : lfn_start;
        e.short_slot = o;
        lfn.clear();
        if (e.name != "." && e.name != "..") out.push_back(std::move(e));
    }
    return out;
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
    File f;
    f.size = hit->size;
    const uint64_t csize = uint64_t(sectors_per_cluster_) * bytes_per_sector_;
    uint64_t left = hit->size;
    const auto clusters = BALLAST_TRY(chain(hit->cluster));
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
        return fail(Errc::parse, "{}: {} is shorter on disk than its size", range_->name(), path);
    return f;
}

Result<std::string> FatVolume::read_range(std::string_view path, uint64_t offset,
                                          uint64_t length) const {
    auto f = BALLAST_TRY(find(path));
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
        it->cluster != 0 && std::any_of(entries.begin(), entries.end(), [&](const Entry& e) {
            return &e != &*it && e.cluster == it->cluster && e.size == it->size && !e.dir;
        });
    if (!aliased || it->dir)
        return fail(Errc::invalid_argument,
                    "{}: {}/{} is not a second name of another file's data; it is not dropped",
                    range_->name(), dir_path, name);
    // The short entry first: one byte in one sector, after which the long-name pieces are
    // orphans every reader skips. The FAT is not touched: the data stays the other name's.
    std::vector<size_t> slots = {it->short_slot};
    for (size_t o = it->first_slot; o < it->short_slot; o += 32)
        slots.push_back(o);
    const char mark = char(0xE5);
    for (size_t o : slots) {
        const uint64_t at = BALLAST_TRY(dir_offset(dir, o));
        BALLAST_TRY(range_->write_at(&mark, 1, at));
        BALLAST_TRY(range_->sync());
    }
    return {};
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
