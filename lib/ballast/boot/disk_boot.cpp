#include "ballast/boot/disk_boot.hpp"

#include "ballast/disk/partition.hpp"

namespace ballast::boot {

Result<DiskBoot> DiskBoot::open(const std::string& disk_path) {
    DiskBoot d;
    d.disk_ = disk_path;
    auto parts = BALLAST_TRY_CTX(disk::read_partitions(disk_path), "{}", disk_path);
    auto esp = disk::find_label(parts, disk::kEfiLabel);
    auto a = disk::find_label(parts, disk::kSlotALabel);
    auto b = disk::find_label(parts, disk::kSlotBLabel);
    if (!esp || !a || !b)
        return fail(Errc::not_found, "{}: not a Ballast disk (no {}, {} and {} partitions)",
                    disk_path, disk::kEfiLabel, disk::kSlotALabel, disk::kSlotBLabel);
    d.slots_ = {{disk_path, a->start, a->size}, {disk_path, b->start, b->size}};
    d.esp_ = BALLAST_TRY(Esp::open(disk_path, esp->start, esp->size));
    const bool sdboot = BALLAST_TRY_CTX(d.esp_->has(kSdBootRecord1), "ESP") ||
                        BALLAST_TRY_CTX(d.esp_->has(kSdBootRecord2), "ESP");
    if (sdboot) {
        d.store_ = std::make_unique<FatEnvStore>(*d.esp_, kSdBootRecord1, kSdBootRecord2);
        d.ukis_ = std::make_unique<FatUkiStore>(*d.esp_);
        d.control_ = std::make_unique<SdBootControl>(*d.store_, *d.ukis_);
    } else {
        d.store_ = std::make_unique<FatEnvStore>(*d.esp_, kEnvCopy1, kEnvCopy2);
        d.control_ = std::make_unique<GrubBootControl>(*d.store_);
    }
    return d;
}

nlohmann::json slots_json(const BootState& s, std::optional<Slot> booted) {
    auto out = nlohmann::json::array();
    for (Slot slot : {Slot::A, Slot::B}) {
        const auto& i = s.at(slot);
        std::string state = !i.ok     ? (i.version.empty() ? "empty" : "bad")
                            : i.trial ? "trial"
                                      : "good";
        out.push_back({{"Slot", std::string(name(slot))},
                       {"State", state},
                       {"Version", i.version},
                       {"TriesLeft", i.trial ? i.tries : 0},
                       {"Primary", s.primary() == slot},
                       {"LastGood", s.last_good == slot},
                       {"Booted", booted == slot}});
    }
    return out;
}

}  // namespace ballast::boot
