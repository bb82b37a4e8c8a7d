#include "ballast/boot/esp.hpp"

#include <algorithm>

#include "ballast/boot/uki.hpp"
#include "ballast/disk/mkfs.hpp"

namespace ballast::boot {
namespace {

// Enough for the headers and section table of any UKI (objcopy's and ukify's put them in the
// first 4 KiB), and for any os-release: what the loader reads of a larger .osrel is not looked
// at here.
constexpr uint64_t kHeadBytes = 64 * 1024;
constexpr uint64_t kMaxOsRelease = 64 * 1024;

std::string uki_path(std::string_view name) {
    return fmt::format("{}/{}", kUkiDir, name);
}

// The identity the loader sorts the file by; nullopt when it would skip the file (not a PE
// image, no .osrel, no ID or NAME in it).
std::optional<sdboot::Identity> read_identity(const disk::FatVolume& fat, std::string_view name,
                                              uint64_t size) {
    const std::string path = uki_path(name);
    auto head = fat.read_range(path, 0, kHeadBytes);
    if (!head) return std::nullopt;
    auto pe = pe_image(*head, path, size);
    if (!pe) return std::nullopt;
    const PeSection* osrel = find_section(*pe, ".osrel");
    if (!osrel || osrel->virtual_size == 0) return std::nullopt;
    auto text = fat.read_range(path, osrel->raw_offset,
                               std::min<uint64_t>(osrel->virtual_size, kMaxOsRelease));
    if (!text) return std::nullopt;
    return sdboot::identity(*text);
}

}  // namespace

Result<std::unique_ptr<Esp>> Esp::open(const std::string& path, uint64_t offset, uint64_t size) {
    auto range =
        BALLAST_TRY(disk::ByteRange::open(path, offset, size, disk::ByteRange::Mode::write));
    std::unique_ptr<Esp> e(new Esp(path, offset, std::move(range)));
    e->fat_.emplace(BALLAST_TRY_CTX(disk::FatVolume::open(e->range_), "ESP"));
    return e;
}

Result<std::string> FatEnvStore::read(int copy) {
    return esp_.fat().read(copies_[copy == 1 ? 0 : 1]);
}

Status FatEnvStore::write(int copy, std::string_view block) {
    return esp_.fat().write_in_place(copies_[copy == 1 ? 0 : 1], block);
}

Result<std::vector<UkiStore::File>> FatUkiStore::list() {
    auto entries = esp_.fat().list(kUkiDir);
    if (!entries && entries.error().code() == Errc::not_found) return std::vector<File>{};
    std::vector<File> out;
    for (const auto& e : BALLAST_TRY(std::move(entries))) {
        if (e.dir) continue;
        out.push_back({e.name, read_identity(esp_.fat(), e.name, e.size)});
    }
    return out;
}

Status FatUkiStore::rename(const std::string& from, const std::string& to) {
    BALLAST_TRY(disk::fat_rename(esp_.path(), esp_.offset(), uki_path(from), uki_path(to)));
    // mtools writes through its own descriptor; an fsync of the ESP's makes its writes durable
    // (the same file or block device, the same page cache).
    return esp_.range().sync();
}

Status FatUkiStore::drop_alias(const std::string& alias) {
    return esp_.fat().drop_alias(kUkiDir, alias);
}

}  // namespace ballast::boot
