#include "ballast/disk/layout.hpp"

namespace ballast::disk {
namespace {

uint64_t round_up(uint64_t v, uint64_t to) {
    return (v + to - 1) / to * to;
}

}  // namespace

uint64_t default_slot_size(uint64_t image_size) {
    return std::max(round_up(2 * image_size, kMiB), 256 * kMiB);
}

Result<std::vector<PartitionPlan>> plan_layout(const LayoutOptions& o) {
    if (o.image_size == 0) return fail(Errc::invalid_argument, "layout: the image size is unknown");
    const uint64_t slot = o.slot_mib ? o.slot_mib * kMiB : default_slot_size(o.image_size);
    if (slot < o.image_size)
        return fail(Errc::invalid_argument, "layout: a {} MiB slot cannot hold the {} byte image",
                    slot / kMiB, o.image_size);
    if (o.efi_mib < 33)
        return fail(Errc::invalid_argument, "layout: the ESP needs at least 33 MiB (FAT32)");
    if (o.oem_mib < 8)
        return fail(Errc::invalid_argument, "layout: the OEM partition needs at least 8 MiB");
    // GPT: the primary table in the first MiB, the backup in the last 33 sectors.
    const uint64_t first = kMiB;
    const uint64_t end = o.disk_size >= kMiB ? (o.disk_size - 33 * 512) / kMiB * kMiB : 0;
    std::vector<PartitionPlan> p;
    uint64_t at = first;
    auto add = [&](int n, const char* label, const char* type, const char* fs, uint64_t size) {
        p.push_back({n, label, type, fs, at, size});
        at += size;
    };
    add(1, kEfiLabel, kTypeEsp, "vfat", o.efi_mib * kMiB);
    add(2, kOemLabel, kTypeLinux, "ext4", o.oem_mib * kMiB);
    add(3, kSlotALabel, kTypeLinux, "", slot);
    add(4, kSlotBLabel, kTypeLinux, "", slot);
    const uint64_t min_persistent =
        (o.persistent_mib ? o.persistent_mib : o.min_persistent_mib) * kMiB;
    if (at + min_persistent > end)
        return fail(Errc::invalid_argument,
                    "layout: the disk ({} MiB) is too small: ESP {} + OEM {} + 2 slots of {} + "
                    "persistent {} MiB "
                    "need {} MiB",
                    o.disk_size / kMiB, o.efi_mib, o.oem_mib, slot / kMiB, min_persistent / kMiB,
                    (at + min_persistent + 2 * kMiB) / kMiB);
    add(5, kPersistentLabel, kTypeLinux, "ext4",
        o.persistent_mib ? o.persistent_mib * kMiB : end - at);
    return p;
}

}  // namespace ballast::disk
