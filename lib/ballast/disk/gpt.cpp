// GPT writing with libfdisk, apart from the reading side so that only programs that partition
// (agentctl install) link libfdisk.
#include <libfdisk/libfdisk.h>

#include <memory>

#include "ballast/disk/partition.hpp"

namespace ballast::disk {
namespace {

struct ContextUnref {
    void operator()(fdisk_context* c) const { fdisk_unref_context(c); }
};
struct PartitionUnref {
    void operator()(fdisk_partition* p) const { fdisk_unref_partition(p); }
};

Status check(int r, std::string_view what) {
    if (r < 0) return fail_errno(r, what);
    return {};
}

}  // namespace

Status write_gpt(const std::string& device, const std::vector<PartitionPlan>& parts) {
    std::unique_ptr<fdisk_context, ContextUnref> cxt(fdisk_new_context());
    if (!cxt) return fail(Errc::failed, "libfdisk: no context");
    BALLAST_TRY(check(fdisk_assign_device(cxt.get(), device.c_str(), 0), "open " + device));
    BALLAST_TRY(check(fdisk_create_disklabel(cxt.get(), "gpt"), device + ": create GPT"));
    fdisk_label* lb = fdisk_get_label(cxt.get(), "gpt");
    const uint64_t sector = fdisk_get_sector_size(cxt.get());
    for (const auto& p : parts) {
        std::unique_ptr<fdisk_partition, PartitionUnref> pa(fdisk_new_partition());
        fdisk_parttype* type = fdisk_label_get_parttype_from_string(lb, p.type.c_str());
        if (!type) return fail(Errc::invalid_argument, "{}: unknown GPT type {}", device, p.type);
        BALLAST_TRY(check(fdisk_partition_set_type(pa.get(), type), p.label));
        fdisk_unref_parttype(type);
        BALLAST_TRY(check(fdisk_partition_set_start(pa.get(), p.start / sector), p.label));
        BALLAST_TRY(check(fdisk_partition_set_size(pa.get(), p.size / sector), p.label));
        BALLAST_TRY(check(fdisk_partition_set_partno(pa.get(), size_t(p.number - 1)), p.label));
        BALLAST_TRY(check(fdisk_partition_set_name(pa.get(), p.label.c_str()), p.label));
        BALLAST_TRY(
            check(fdisk_add_partition(cxt.get(), pa.get(), nullptr), device + ": add " + p.label));
    }
    BALLAST_TRY(check(fdisk_write_disklabel(cxt.get()), device + ": write GPT"));
    // Deassigning syncs, and on block devices asks the kernel to re-read the table (which this
    // build machine's kernel cannot: that is not an error here).
    BALLAST_TRY(check(fdisk_deassign_device(cxt.get(), 0), device + ": close"));
    return {};
}

}  // namespace ballast::disk
