#include "ballast/disk/partition.hpp"

#include <blkid/blkid.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "ballast/core/atomic_file.hpp"
#include "ballast/core/fd.hpp"

namespace ballast::disk {
namespace {

struct ProbeFree {
    void operator()(blkid_struct_probe* p) const { blkid_free_probe(p); }
};

std::string upper(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), ::toupper);
    return s;
}

}  // namespace

Result<std::vector<PartitionInfo>> read_partitions(const std::string& device) {
    std::unique_ptr<blkid_struct_probe, ProbeFree> pr(
        blkid_new_probe_from_filename(device.c_str()));
    if (!pr) return fail_errno(errno, device);
    blkid_probe_enable_partitions(pr.get(), 1);
    blkid_probe_set_partitions_flags(pr.get(), BLKID_PARTS_ENTRY_DETAILS);
    blkid_partlist ls = blkid_probe_get_partitions(pr.get());
    std::vector<PartitionInfo> out;
    if (!ls) return out;
    blkid_parttable tab = blkid_partlist_get_table(ls);
    const char* type = tab ? blkid_parttable_get_type(tab) : nullptr;
    if (!type || std::string_view(type) != "gpt") return out;
    const uint64_t sector = 512;
    const int n = blkid_partlist_numof_partitions(ls);
    for (int i = 0; i < n; ++i) {
        blkid_partition p = blkid_partlist_get_partition(ls, i);
        PartitionInfo info;
        info.number = blkid_partition_get_partno(p);
        if (const char* name = blkid_partition_get_name(p)) info.label = name;
        if (const char* t = blkid_partition_get_type_string(p)) info.type = upper(t);
        info.start = uint64_t(blkid_partition_get_start(p)) * sector;
        info.size = uint64_t(blkid_partition_get_size(p)) * sector;
        out.push_back(info);
    }
    return out;
}

std::optional<PartitionInfo> find_label(const std::vector<PartitionInfo>& parts,
                                        const std::string& label) {
    for (const auto& p : parts)
        if (p.label == label) return p;
    return std::nullopt;
}

Result<std::optional<std::string>> probe_content(const std::string& device, uint64_t offset,
                                                 uint64_t size) {
    std::unique_ptr<blkid_struct_probe, ProbeFree> pr(blkid_new_probe());
    if (!pr) return fail(Errc::failed, "blkid: no probe");
    int fd = ::open(device.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail_errno(errno, device);
    UniqueFd guard(fd);
    if (blkid_probe_set_device(pr.get(), fd, blkid_loff_t(offset), blkid_loff_t(size)) < 0)
        return fail(Errc::io, "{}: cannot probe", device);
    blkid_probe_enable_superblocks(pr.get(), 1);
    blkid_probe_set_superblocks_flags(pr.get(), BLKID_SUBLKS_TYPE);
    blkid_probe_enable_partitions(pr.get(), 1);
    const int r = blkid_do_safeprobe(pr.get());
    if (r == 1) return std::optional<std::string>();
    if (r == -2) return std::optional<std::string>("several signatures");
    if (r < 0) return fail(Errc::io, "{}: probing failed", device);
    const char* v = nullptr;
    if (blkid_probe_lookup_value(pr.get(), "PTTYPE", &v, nullptr) == 0)
        return std::optional<std::string>(v);
    if (blkid_probe_lookup_value(pr.get(), "TYPE", &v, nullptr) == 0)
        return std::optional<std::string>(v);
    return std::optional<std::string>("unknown data");
}

namespace {

using DevNum = std::pair<unsigned, unsigned>;

std::optional<DevNum> dev_of(const std::filesystem::path& sys) {
    auto dev = read_file(sys / "dev", 64);
    unsigned ma, mi;
    if (dev && std::sscanf(dev->c_str(), "%u:%u", &ma, &mi) == 2) return DevNum{ma, mi};
    return std::nullopt;
}

uint64_t sys_number(const std::filesystem::path& p) {
    auto t = read_file(p, 64);
    return t ? std::strtoull(t->c_str(), nullptr, 10) : 0;
}

// [a, a + n) and [b, b + m) share a byte; n or m 0: to the end.
bool overlaps(uint64_t a, uint64_t n, uint64_t b, uint64_t m) {
    return (m == 0 || a < b + m) && (n == 0 || b < a + n);
}

// `sys` (a /sys/dev/block node) and every device stacked on it (dm-crypt, ...).
void add_with_holders(const std::filesystem::path& sys, std::vector<DevNum>& out, int depth = 0) {
    auto d = dev_of(sys);
    if (!d || depth > 8) return;
    out.push_back(*d);
    std::error_code ec;
    for (const auto& h : std::filesystem::directory_iterator(sys / "holders", ec))
        add_with_holders(std::filesystem::canonical(h.path(), ec), out, depth + 1);
}

}  // namespace

Result<std::optional<std::string>> mounted_at(const std::string& device, uint64_t offset,
                                              uint64_t size) {
    struct stat st {};
    if (::stat(device.c_str(), &st) < 0) return fail_errno(errno, device);
    std::vector<DevNum> devs;
    std::error_code ec;
    if (S_ISBLK(st.st_mode)) {
        const auto sys = std::filesystem::canonical(
            fmt::format("/sys/dev/block/{}:{}", major(st.st_rdev), minor(st.st_rdev)), ec);
        // The device itself, when it is mounted whole (or stacked on) ...
        if (auto d = dev_of(sys)) devs.push_back(*d);
        for (const auto& h : std::filesystem::directory_iterator(sys / "holders", ec))
            add_with_holders(std::filesystem::canonical(h.path(), ec), devs);
        // ... and its partitions that share a byte with the range (sysfs counts 512-byte
        // sectors).
        for (const auto& e : std::filesystem::directory_iterator(sys, ec))
            if (std::filesystem::exists(e.path() / "partition") &&
                overlaps(offset, size, sys_number(e.path() / "start") * 512,
                         sys_number(e.path() / "size") * 512))
                add_with_holders(e.path(), devs);
    } else {
        // An image file: loop devices backed by it that share a byte with the range.
        auto real = std::filesystem::canonical(device, ec);
        for (const auto& e : std::filesystem::directory_iterator("/sys/block", ec)) {
            auto back = read_file(e.path() / "loop/backing_file", 4096);
            if (!back) continue;
            std::string b = *back;
            while (!b.empty() && b.back() == '\n')
                b.pop_back();
            if (b != real.string() || !overlaps(offset, size, sys_number(e.path() / "loop/offset"),
                                                sys_number(e.path() / "loop/sizelimit")))
                continue;
            add_with_holders(e.path(), devs);
            // losetup -P: the loop device's own partitions (conservatively, all of them).
            for (const auto& p : std::filesystem::directory_iterator(e.path(), ec))
                if (std::filesystem::exists(p.path() / "partition"))
                    add_with_holders(p.path(), devs);
        }
    }
    std::ifstream mi("/proc/self/mountinfo");
    std::string line;
    while (std::getline(mi, line)) {
        std::istringstream in(line);
        std::string id, parent, majmin, rootp, point;
        in >> id >> parent >> majmin >> rootp >> point;
        unsigned ma, mn;
        if (std::sscanf(majmin.c_str(), "%u:%u", &ma, &mn) != 2) continue;
        for (auto [a, b] : devs)
            if (a == ma && b == mn) return std::optional<std::string>(point);
    }
    return std::optional<std::string>();
}

Result<RangeNode> range_node(const std::string& device, uint64_t offset, uint64_t size) {
    struct stat st {};
    if (::stat(device.c_str(), &st) < 0) return fail_errno(errno, device);
    if (!S_ISBLK(st.st_mode)) return RangeNode{device, offset};
    std::error_code ec;
    const auto sys = std::filesystem::canonical(
        fmt::format("/sys/dev/block/{}:{}", major(st.st_rdev), minor(st.st_rdev)), ec);
    for (const auto& e : std::filesystem::directory_iterator(sys, ec))
        if (std::filesystem::exists(e.path() / "partition") &&
            sys_number(e.path() / "start") * 512 == offset &&
            sys_number(e.path() / "size") * 512 == size)
            return RangeNode{"/dev/" + e.path().filename().string(), 0};
    return RangeNode{device, offset};
}

Result<std::optional<std::string>> parent_disk(const std::string& device) {
    struct stat st {};
    if (::stat(device.c_str(), &st) < 0) return fail_errno(errno, device);
    if (!S_ISBLK(st.st_mode)) return std::optional<std::string>();
    std::error_code ec;
    const auto sys = std::filesystem::canonical(
        fmt::format("/sys/dev/block/{}:{}", major(st.st_rdev), minor(st.st_rdev)), ec);
    if (ec || !std::filesystem::exists(sys / "partition")) return std::optional<std::string>();
    return std::optional<std::string>("/dev/" + sys.parent_path().filename().string());
}

}  // namespace ballast::disk
