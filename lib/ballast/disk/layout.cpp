#include "ballast/disk/layout.hpp"

#include <algorithm>
#include <string_view>

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

Result<std::vector<PartitionPlan>> check_existing_layout(const std::vector<FoundPartition>& found,
                                                         uint64_t image_size) {
    struct Want {
        int number;
        const char* label;
        std::vector<std::string_view> content;  // empty: a raw slot, anything
    };
    const Want wants[] = {{1, kEfiLabel, {"vfat"}},
                          {2, kOemLabel, {"ext4"}},
                          {3, kSlotALabel, {}},
                          {4, kSlotBLabel, {}},
                          {5, kPersistentLabel, {"ext4", "crypto_LUKS"}}};
    std::vector<PartitionPlan> out;
    for (const auto& w : wants) {
        auto it = std::find_if(found.begin(), found.end(),
                               [&](const FoundPartition& f) { return f.label == w.label; });
        if (it == found.end())
            return fail(Errc::invalid_argument,
                        "install.no-format: no {} partition (no-format installs into an existing "
                        "Ballast layout; install without it to make one)",
                        w.label);
        if (it->number != w.number)
            return fail(Errc::invalid_argument,
                        "install.no-format: {} is partition {}, not {} (grub.cfg looks for it "
                        "there)",
                        w.label, it->number, w.number);
        if (!w.content.empty() &&
            std::find(w.content.begin(), w.content.end(), it->content) == w.content.end())
            return fail(Errc::invalid_argument,
                        "install.no-format: {} holds {}, not {} (no-format keeps filesystems as "
                        "they are; install without it to make them)",
                        w.label, it->content.empty() ? "no filesystem" : it->content,
                        w.content.front());
        if (w.content.empty() && it->size < image_size)
            return fail(Errc::invalid_argument,
                        "install.no-format: {} is {} MiB; the image needs {} MiB", w.label,
                        it->size / kMiB, (image_size + kMiB - 1) / kMiB);
        out.push_back({it->number, it->label, it->type, w.content.empty() ? "" : it->content,
                       it->start, it->size});
    }
    return out;
}

}  // namespace ballast::disk
