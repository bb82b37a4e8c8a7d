#include "ballast/datasource/volume.hpp"

#include <blkid/blkid.h>

#include <strings.h>
#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>

#include "ballast/core/process.hpp"

namespace ballast::datasource {
namespace {

std::optional<Volume> probe(const std::string& dev, const std::vector<std::string_view>& labels) {
    blkid_probe pr = blkid_new_probe_from_filename(dev.c_str());
    if (!pr) return std::nullopt;
    blkid_probe_enable_superblocks(pr, 1);
    blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_LABEL | BLKID_SUBLKS_TYPE);
    std::optional<Volume> out;
    if (blkid_do_safeprobe(pr) == 0) {
        const char *label = nullptr, *type = nullptr;
        blkid_probe_lookup_value(pr, "LABEL", &label, nullptr);
        blkid_probe_lookup_value(pr, "TYPE", &type, nullptr);
        if (label && type)
            for (auto want : labels)
                if (strcasecmp(label, std::string(want).c_str()) == 0) out = Volume{dev, type};
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
    for (const auto& dev : candidate_devices(live))
        if (auto v = probe(dev, labels)) return v;
    return std::nullopt;
}

Result<std::optional<std::string>> read_volume_file(const Volume& v, const std::string& path) {
    ProcessOptions p;
    if (v.type == "vfat")
        p.argv = {"mtype", "-i", v.device, "::" + path};
    else if (v.type == "iso9660")
        p.argv = {"isoinfo", "-i", v.device, "-R", "-x", "/" + path};
    else if (v.type == "ext4" || v.type == "ext3" || v.type == "ext2")
        p.argv = {"debugfs", "-R", "cat /" + path, v.device};
    else
        return fail(Errc::unsupported, "{}: a {} volume cannot be read (vfat, iso9660 or ext4)",
                    v.device, v.type);
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
