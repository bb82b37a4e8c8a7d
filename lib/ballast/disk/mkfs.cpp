#include "ballast/disk/mkfs.hpp"

#include <algorithm>
#include <cctype>
#include <cstring>

#include "ballast/core/atomic_file.hpp"
#include "ballast/core/process.hpp"

namespace ballast::disk {
namespace {

Status run_tool(std::vector<std::string> argv, const std::string& what) {
    ProcessOptions p;
    p.argv = std::move(argv);
    p.env = {"MTOOLS_SKIP_CHECK=1", "MTOOLS_NO_VFAT=0"};
    p.timeout = std::chrono::minutes(10);
    return run_checked(p, what);
}

std::string at(const std::string& device, uint64_t offset) {
    return device + "@@" + std::to_string(offset);
}

}  // namespace

Status make_vfat(const std::string& device, uint64_t offset, uint64_t size,
                 const std::string& label) {
    if (offset % 512 || size % 1024) return fail(Errc::invalid_argument, "vfat: unaligned range");
    // -I: on a block device mkfs.vfat refuses a disk that has partitions, and the range given
    // here is one of them, reached through the whole disk.
    return run_tool(
        {"mkfs.vfat", "-I", "-F", "32", "-S", "512", "-s", "1", "-n", label,
         "--offset=" + std::to_string(offset / 512), device, std::to_string(size / 1024)},
        "format " + label);
}

Status make_ext4(const std::string& device, uint64_t offset, uint64_t size,
                 const std::string& label, const std::string& populate, bool lazy) {
    std::vector<std::string> argv = {
        "mke2fs", "-t", "ext4",
        // Twice: mke2fs's own check refuses a disk any partition of which is mounted; the
        // callers check the byte range itself (disk::mounted_at), which is what matters here.
        "-F", "-F", "-q", "-L", label, "-E",
        "offset=" + std::to_string(offset) +
            (lazy ? ",lazy_itable_init=1,lazy_journal_init=1,nodiscard" : "")};
    if (!populate.empty()) argv.insert(argv.end(), {"-d", populate});
    argv.insert(argv.end(), {device, std::to_string(size / 1024) + "K"});
    return run_tool(std::move(argv), "format " + label);
}

Status fat_mkdir(const std::string& device, uint64_t offset, const std::string& path) {
    // mmd makes one level and fails on an existing folder: walk the path, skipping what exists.
    std::string cur;
    size_t i = 1;
    while (i <= path.size()) {
        size_t j = path.find('/', i);
        if (j == std::string::npos) j = path.size();
        cur += "/" + path.substr(i, j - i);
        i = j + 1;
        ProcessOptions probe;
        probe.argv = {"mdir", "-b", "-i", at(device, offset), "::" + cur};
        probe.env = {"MTOOLS_SKIP_CHECK=1"};
        if (auto r = run_process(probe); r && r->success()) continue;
        BALLAST_TRY(run_tool({"mmd", "-i", at(device, offset), "::" + cur}, "ESP: make " + cur));
    }
    return {};
}

Status fat_put(const std::string& device, uint64_t offset, const std::string& src,
               const std::string& dst) {
    return run_tool({"mcopy", "-o", "-i", at(device, offset), src, "::" + dst}, "ESP: copy " + dst);
}

Status ext4_put(const std::string& device, uint64_t offset, const std::string& src,
                const std::string& name) {
    const auto plain = [](std::string_view s) {
        return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) || std::strchr("._+-", c);
        });
    };
    if (!plain(name) || name[0] == '.')
        return fail(Errc::invalid_argument, "ext4: '{}' is not a plain file name", name);
    if (device.find('?') != std::string::npos || src.find_first_of(" \t\"'") != std::string::npos)
        return fail(Errc::invalid_argument, "ext4: {} or {} cannot be passed to debugfs", device,
                    src);
    // debugfs takes the offset after '?' (e2fsprogs' unix I/O options); it exits 0 whatever a
    // request did, so what it wrote is read back below instead of trusting its messages.
    const std::string spec = device + "?offset=" + std::to_string(offset);
    auto debugfs = [&](std::vector<std::string> argv) {
        ProcessOptions p;
        p.argv = {"debugfs"};
        p.argv.insert(p.argv.end(), argv.begin(), argv.end());
        p.argv.push_back(spec);
        p.timeout = std::chrono::minutes(2);
        return run_process(p);
    };
    auto want = BALLAST_TRY(read_file(src, 16u << 20));
    if (auto r = debugfs({"-w", "-R", "rm /" + name}); !r)
        return std::unexpected(std::move(r.error()).context("ext4: debugfs (install e2fsprogs)"));
    if (auto r = debugfs({"-w", "-R", "write " + src + " /" + name}); !r)
        return std::unexpected(std::move(r.error()).context("ext4: debugfs"));
    auto got = debugfs({"-R", "cat /" + name});
    if (!got) return std::unexpected(std::move(got.error()).context("ext4: debugfs"));
    if (!got->success() || got->out != want)
        return fail(Errc::io, "ext4: writing {} at offset {} of {} did not take ({})", name, offset,
                    device, got->err.empty() ? "content differs" : got->err);
    return {};
}

}  // namespace ballast::disk
