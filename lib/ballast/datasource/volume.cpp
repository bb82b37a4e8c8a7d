#include "ballast/datasource/volume.hpp"

#include <blkid/blkid.h>

#include <strings.h>
#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>

#include "ballast/core/process.hpp"
#include "ballast/datasource/udf.hpp"
#include "ballast/disk/range.hpp"

namespace ballast::datasource {
namespace {

// The device's filesystem type and label; nullopt when it holds no filesystem blkid knows.
struct Probed {
    std::string type, label;
};
std::optional<Probed> probe(const std::string& dev) {
    blkid_probe pr = blkid_new_probe_from_filename(dev.c_str());
    if (!pr) return std::nullopt;
    blkid_probe_enable_superblocks(pr, 1);
    blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_LABEL | BLKID_SUBLKS_TYPE);
    std::optional<Probed> out;
    if (blkid_do_safeprobe(pr) == 0) {
        const char *label = nullptr, *type = nullptr;
        blkid_probe_lookup_value(pr, "LABEL", &label, nullptr);
        blkid_probe_lookup_value(pr, "TYPE", &type, nullptr);
        if (type) out = Probed{type, label ? label : ""};
    }
    blkid_free_probe(pr);
    return out;
}

std::vector<std::string> candidate_devices(bool live) {
    std::vector<std::string> devs;
    if (const char* extra = std::getenv("BALLAST_DATASOURCE_DEVICES")) {
        std::string s = extra;
        size_t i = 0;
        while (i <= s.size()) {
            size_t j = s.find(':', i);
            if (j == std::string::npos) j = s.size();
            if (j > i) devs.push_back(s.substr(i, j - i));
            i = j + 1;
        }
    }
    if (live) {
        std::error_code ec;
        for (const auto& e : std::filesystem::directory_iterator("/sys/class/block", ec))
            devs.push_back("/dev/" + e.path().filename().string());
    }
    return devs;
}

}  // namespace

std::optional<Volume> find_volume(const std::vector<std::string_view>& labels, bool live) {
    for (const auto& dev : candidate_devices(live)) {
        const auto p = probe(dev);
        if (!p || p->label.empty()) continue;
        for (auto want : labels)
            if (strcasecmp(p->label.c_str(), std::string(want).c_str()) == 0)
                return Volume{dev, p->type};
    }
    return std::nullopt;
}

std::vector<Volume> find_volumes_by_type(const std::vector<std::string_view>& types, bool live) {
    std::vector<std::pair<std::string, Probed>> found;
    for (const auto& dev : candidate_devices(live))
        if (auto p = probe(dev)) found.emplace_back(dev, std::move(*p));
    std::vector<Volume> out;
    for (auto type : types)
        for (const auto& [dev, p] : found)
            if (p.type == type) out.push_back(Volume{dev, p.type});
    return out;
}

Result<std::optional<std::string>> read_volume_file(const Volume& v, const std::string& path) {
    if (v.type == "udf") {
        const auto dev =
            BALLAST_TRY(disk::ByteRange::open(v.device, 0, 0, disk::ByteRange::Mode::read));
        const ReadAt read = [&](uint64_t off, size_t len) -> Result<std::string> {
            std::string buf(len, '\0');
            BALLAST_TRY(dev.read_at(buf.data(), len, off));
            return buf;
        };
        auto got = BALLAST_TRY_CTX(udf_read_file(read, dev.size(), path), "read {} from {}", path,
                                   v.device);
        if (got && got->empty()) got.reset();  // as the tools' empty output reads
        return got;
    }
    ProcessOptions p;
    if (v.type == "vfat")
        p.argv = {"mtype", "-i", v.device, "::" + path};
    else if (v.type == "iso9660")
        p.argv = {"isoinfo", "-i", v.device, "-R", "-x", "/" + path};
    else if (v.type == "ext4" || v.type == "ext3" || v.type == "ext2")
        p.argv = {"debugfs", "-R", "cat /" + path, v.device};
    else
        return fail(Errc::unsupported,
                    "{}: a {} volume cannot be read (vfat, iso9660, udf or ext4)", v.device,
                    v.type);
    p.env = {"MTOOLS_SKIP_CHECK=1"};
    p.timeout = std::chrono::seconds(30);
    auto r = run_process(p);
    if (!r)
        return std::unexpected(
            std::move(r.error()).context(fmt::format("read {} from {}", path, v.device)));
    if (!r->success() || r->out.empty()) return std::optional<std::string>();
    if (r->out.size() >= p.max_capture)
        return fail(Errc::invalid_argument, "{}: {} is larger than {} MiB", v.device, path,
                    p.max_capture >> 20);
    return std::optional<std::string>(r->out);
}

}  // namespace ballast::datasource
