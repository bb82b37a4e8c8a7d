#include "ballast/boot/esp.hpp"

#include <algorithm>

namespace ballast::boot {
namespace {

// The loader reads the headers wherever e_lfanew puts them and all of .osrel; a UKI whose
// headers lie past the first MiB, or whose .osrel is larger, is not modelled: refused.
constexpr uint64_t kFirstRead = 64 * 1024;
constexpr uint64_t kMaxRead = 1024 * 1024;

std::string uki_path(std::string_view name) {
    return fmt::format("{}/{}", kUkiDir, name);
}

// The identity the loader sorts the file by; nullopt when it would skip the file (not an x86-64
// PE image, no .osrel, no ID or NAME in it). Read errors are errors.
Result<std::optional<sdboot::Identity>> read_identity(const disk::FatVolume& fat,
                                                      const disk::FatVolume::DirEntry& e) {
    std::string head = BALLAST_TRY(fat.read_entry(e, 0, kFirstRead));
    auto at = sdboot::find_osrel(head);
    // Each round asks for more (the PE header, then the section table): at most two more reads.
    for (int round = 0; round < 2 && at.kind == sdboot::OsrelAt::Kind::need; ++round) {
        if (at.size > e.size || head.size() >= e.size) return std::nullopt;  // the loader fails too
        if (at.size > kMaxRead)
            return fail(Errc::unsupported, "{}: PE headers past the first MiB", uki_path(e.name));
        head = BALLAST_TRY(fat.read_entry(e, 0, at.size));
        at = sdboot::find_osrel(head);
    }
    if (at.kind != sdboot::OsrelAt::Kind::at || at.offset >= e.size) return std::nullopt;
    // The loader reads what there is of it, up to the end of the file.
    const uint64_t size = std::min<uint64_t>(at.size, e.size - at.offset);
    if (size > kMaxRead)
        return fail(Errc::unsupported, "{}: an .osrel of {} bytes", uki_path(e.name), size);
    return sdboot::identity(BALLAST_TRY(fat.read_entry(e, at.offset, size)));
}

}  // namespace

Result<std::unique_ptr<Esp>> Esp::open(const std::string& path, uint64_t offset, uint64_t size) {
    auto range =
        BALLAST_TRY(disk::ByteRange::open(path, offset, size, disk::ByteRange::Mode::write));
    std::unique_ptr<Esp> e(new Esp(std::move(range)));
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
        auto id = BALLAST_TRY_CTX(read_identity(esp_.fat(), e), "{}", uki_path(e.name));
        out.push_back({e.name, std::move(id), e.cluster, e.size});
    }
    return out;
}

Status FatUkiStore::rename(const std::string& from, const std::string& to) {
    return esp_.fat().rename(kUkiDir, from, to);
}

Status FatUkiStore::tidy() {
    auto n = esp_.fat().free_orphans(kUkiDir);
    if (!n && n.error().code() == Errc::not_found) return {};  // no /EFI/Linux yet
    if (!n) return std::unexpected(n.error());
    return {};
}

Status FatUkiStore::drop_alias(const std::string& alias) {
    return esp_.fat().drop_alias(kUkiDir, alias);
}

}  // namespace ballast::boot
