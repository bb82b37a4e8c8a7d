// datasource: fetch more cloud-config into /run/ballast/config.d (a config source, read by the
// stages that follow). Providers: config_url (https), nocloud/cdrom (a volume labelled cidata,
// or cloud-init's seed folder /var/lib/cloud/seed/nocloud). Volumes are read in user space
// (mtools, isoinfo, debugfs): no kernel filesystem driver ever parses the removable medium.
#include <blkid/blkid.h>

#include <cstdlib>
#include <filesystem>

#include "ballast/config/sources.hpp"
#include "ballast/core/files.hpp"
#include "ballast/core/process.hpp"
#include "ballast/stages/modules.hpp"

namespace ballast::stages::modules {
namespace {

struct Volume {
    std::string device, type;
};

std::optional<Volume> probe_cidata(const std::string& dev) {
    blkid_probe pr = blkid_new_probe_from_filename(dev.c_str());
    if (!pr) return std::nullopt;
    blkid_probe_enable_superblocks(pr, 1);
    blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_LABEL | BLKID_SUBLKS_TYPE);
    std::optional<Volume> out;
    if (blkid_do_safeprobe(pr) == 0) {
        const char *label = nullptr, *type = nullptr;
        blkid_probe_lookup_value(pr, "LABEL", &label, nullptr);
        blkid_probe_lookup_value(pr, "TYPE", &type, nullptr);
        if (label && type &&
            (std::string_view(label) == "cidata" || std::string_view(label) == "CIDATA"))
            out = Volume{dev, type};
    }
    blkid_free_probe(pr);
    return out;
}

std::vector<std::string> candidate_devices(bool live) {
    std::vector<std::string> devs;
    // Test hook: extra image files to probe, colon-separated.
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

Result<std::optional<std::string>> read_volume_file(const Volume& v, const std::string& name) {
    ProcessOptions p;
    if (v.type == "vfat")
        p.argv = {"mtype", "-i", v.device, "::" + name};
    else if (v.type == "iso9660")
        p.argv = {"isoinfo", "-i", v.device, "-R", "-x", "/" + name};
    else if (v.type == "ext4" || v.type == "ext3" || v.type == "ext2")
        p.argv = {"debugfs", "-R", "cat /" + name, v.device};
    else
        return fail(Errc::unsupported,
                    "{}: a {} cidata volume cannot be read (vfat, iso9660 or ext4)", v.device,
                    v.type);
    p.env = {"MTOOLS_SKIP_CHECK=1"};
    p.timeout = std::chrono::seconds(30);
    auto r = run_process(p);
    if (!r)
        return std::unexpected(
            std::move(r.error()).context(fmt::format("read {} from {}", name, v.device)));
    if (!r->success() || r->out.empty()) return std::optional<std::string>();
    return std::optional<std::string>(r->out);
}

// Stores fetched config under `dir`; a document without a header is refused (it would be
// ignored at load, silently in Kairos).
void store(StageContext& ctx, ModuleResult& r, const std::string& dir, const std::string& name,
           const std::string& text, const std::string& origin) {
    if (config::detect_kind(text, "") == config::SourceKind::no_header) {
        r.error(origin + ": fetched config has no #cloud-config header; not used");
        return;
    }
    if (auto made = mkdirs_beneath(ctx.root, dir, 0700); !made) {
        r.error(made.error().what());
        return;
    }
    auto changed = ensure_file(ctx.root, dir + "/" + name, text, 0600);
    if (!changed)
        r.error(changed.error().what());
    else if (*changed)
        r.change(fmt::format("stored config from {} in {}/{}", origin, dir, name));
}

std::string meta_hostname(const std::string& meta) {
    auto at = meta.find("local-hostname:");
    if (at == std::string::npos) return "";
    auto b = meta.find_first_not_of(" \t\"'", at + 15);
    auto e = meta.find_first_of("\"'\r\n", b);
    return b == std::string::npos
               ? ""
               : meta.substr(b, e == std::string::npos ? std::string::npos : e - b);
}

}  // namespace

void datasource(const config::Step& s, StageContext& ctx, ModuleResult& r) {
    const auto& ds = s.datasource;
    if (ds.empty()) return;
    for (const auto& p : ds.providers) {
        if (p == "config_url") {
            if (ds.config_url.empty()) {
                r.error("datasource config_url: no config_url given");
                continue;
            }
            auto body = http::get_string(ds.config_url, ctx.http);
            if (!body)
                r.error(body.error().what());
            else
                store(ctx, r, ds.path, "50-config-url.yaml", *body, ds.config_url);
            continue;
        }
        // nocloud / cdrom
        bool found = false;
        auto seed = read_beneath(ctx.root, "/var/lib/cloud/seed/nocloud/user-data");
        if (seed && *seed) {
            store(ctx, r, ds.path, "40-nocloud.yaml", **seed, "/var/lib/cloud/seed/nocloud");
            found = true;
        }
        for (const auto& dev : candidate_devices(ctx.live)) {
            if (found) break;
            auto vol = probe_cidata(dev);
            if (!vol) continue;
            found = true;
            auto user = read_volume_file(*vol, "user-data");
            if (!user) {
                r.error(user.error().what());
                break;
            }
            if (*user) store(ctx, r, ds.path, "40-nocloud.yaml", **user, vol->device);
            auto meta = read_volume_file(*vol, "meta-data");
            if (meta && *meta) {
                auto h = meta_hostname(**meta);
                if (!h.empty())
                    store(ctx, r, ds.path, "41-nocloud-meta.yaml",
                          "#cloud-config\nhostname: " + h + "\n", vol->device);
            }
        }
        if (!found) r.note("datasource " + p + ": no cidata volume or seed found");
    }
}

}  // namespace ballast::stages::modules
