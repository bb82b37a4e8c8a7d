#include "ballast/boot/esp.hpp"

namespace ballast::boot {

Result<std::unique_ptr<FatEnvStore>> FatEnvStore::open(const std::string& path, uint64_t offset,
                                                       uint64_t size) {
    auto range =
        BALLAST_TRY(disk::ByteRange::open(path, offset, size, disk::ByteRange::Mode::write));
    std::unique_ptr<FatEnvStore> s(new FatEnvStore(std::move(range)));
    s->fat_.emplace(BALLAST_TRY_CTX(disk::FatVolume::open(s->range_), "ESP"));
    return s;
}

Result<std::string> FatEnvStore::read(int copy) {
    return fat_->read(copy == 1 ? kEnvCopy1 : kEnvCopy2);
}

Status FatEnvStore::write(int copy, std::string_view block) {
    return fat_->write_in_place(copy == 1 ? kEnvCopy1 : kEnvCopy2, block);
}

}  // namespace ballast::boot
