// datasource: fetch more cloud-config into /run/ballast/config.d (a config source, read by the
// stages that follow). Providers: config_url (https); nocloud/cdrom (a volume labelled cidata,
// or cloud-init's seed folder /var/lib/cloud/seed/nocloud); the clouds of datasource/providers
// (aws, gcp, azure, openstack, digitalocean, hetzner, vultr, scaleway, equinix): the first whose
// service answers, those the DMI data names first. A cloud's user-data is decoded
// (datasource/userdata: gzip, MIME multipart); its cloud-config parts are stored, its host name
// and SSH keys become a config of their own, and its scripts run once per instance, as
// cloud-init runs user scripts.
#include <chrono>
#include <thread>

#include "ballast/config/sources.hpp"
#include "ballast/core/files.hpp"
#include "ballast/core/process.hpp"
#include "ballast/datasource/providers.hpp"
#include "ballast/datasource/userdata.hpp"
#include "ballast/datasource/volume.hpp"
#include "ballast/stages/modules.hpp"

#include <yaml-cpp/yaml.h>

#include <cctype>

namespace ballast::stages::modules {
namespace {

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

// A name safe in a file name (instance ids are the platform's).
std::string file_safe(std::string_view s) {
    std::string out;
    for (char c : s.substr(0, 128))
        out += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')
                   ? c
                   : '_';
    return out;
}

bool sets_hostname(const std::string& cloud_config) {
    try {
        auto y = YAML::Load(cloud_config);
        return y.IsMap() && y["hostname"] && !y["hostname"].IsNull();
    } catch (const YAML::Exception&) {
        return false;  // the loader reports it, naming file:line
    }
}

// cloud-init's scripts-user: each script once per instance (a marker on persistent storage),
// by path, so that its #! line picks the interpreter. A failure is reported, not retried.
void run_scripts(const datasource::Metadata& m, const std::vector<std::string>& scripts,
                 StageContext& ctx, ModuleResult& r) {
    if (scripts.empty()) return;
    const std::string dir = "/var/lib/ballast/datasource/" + m.provider;
    const std::string done = dir + "/scripts-done." + file_safe(m.instance_id);
    if (auto st = stat_beneath(ctx.root, done); st && *st) {
        r.note(fmt::format("datasource {}: user-data scripts already ran for instance {}",
                           m.provider, m.instance_id));
        return;
    }
    if (auto made = mkdirs_beneath(ctx.root, dir, 0700); !made) {
        r.error(made.error().what());
        return;
    }
    for (size_t i = 0; i < scripts.size(); ++i) {
        const std::string path = fmt::format("{}/script-{}", dir, i + 1);
        auto wrote = ensure_file(ctx.root, path, scripts[i], 0700);
        if (!wrote) {
            r.error(wrote.error().what());
            return;
        }
        ShellOptions opts;
        opts.step_id = "datasource";
        auto ran = run_argv(ctx, {path}, opts);
        if (!ran)
            r.error(fmt::format("datasource {}: user-data script {}: {}", m.provider, i + 1,
                                ran.error().what()));
        else if (!ran->success())
            r.error(fmt::format("datasource {}: user-data script {} {}", m.provider, i + 1,
                                ran->describe()));
        else
            r.change(fmt::format("ran user-data script {} from {}", i + 1, m.provider));
    }
    r.check(write_beneath(ctx.root, done, m.instance_id + "\n", 0600));
}

// What a cloud gave: its user-data's cloud-config parts stored as config sources (40-NAME.yaml,
// 40-NAME-2.yaml, ...), the host name (unless the user-data sets one, as cloud-init ranks them)
// and SSH keys (for root) applied now, its scripts run.
void apply(const datasource::Metadata& m, const config::DatasourceSpec& ds, StageContext& ctx,
           ModuleResult& r) {
    datasource::UserData ud;
    if (m.user_data) {
        auto decoded = datasource::decode_user_data(*m.user_data);
        if (!decoded) {
            r.error(fmt::format("datasource {}: {}", m.provider, decoded.error().what()));
            return;
        }
        ud = std::move(*decoded);
    }
    size_t stored = 0;
    bool user_hostname = false;
    for (const auto& doc : ud.configs) {
        user_hostname = user_hostname || sets_hostname(doc);
        const auto name = stored == 0 ? fmt::format("40-{}.yaml", m.provider)
                                      : fmt::format("40-{}-{}.yaml", m.provider, stored + 1);
        store(ctx, r, ds.path, name, doc, m.origin);
        ++stored;
    }
    // Parts the user-data no longer has.
    for (size_t k = stored;; ++k) {
        const auto name = k == 0 ? fmt::format("{}/40-{}.yaml", ds.path, m.provider)
                                 : fmt::format("{}/40-{}-{}.yaml", ds.path, m.provider, k + 1);
        auto st = stat_beneath(ctx.root, name);
        if (!st || !*st) break;
        if (auto gone = remove_beneath(ctx.root, name); !gone)
            r.error(gone.error().what());
        else
            r.change("removed " + name);
    }
    for (const auto& why : ud.ignored)
        r.note(fmt::format("datasource {}: {}", m.provider, why));
    if (!m.user_data) r.note(fmt::format("datasource {}: no user-data", m.provider));

    config::Step meta;
    if (!user_hostname) meta.hostname = m.hostname;
    for (const auto& k : m.ssh_keys)
        if (!config::is_remote_key(k)) meta.authorized_keys["root"].push_back(k);
    hostname(meta, ctx, r);
    authorized_keys(meta, ctx, r);
    run_scripts(m, ud.scripts, ctx, r);
}

// The first cloud whose metadata service answers. One the firmware names is waited for (its
// network may still be coming up) and is an error when it never answers; the others are asked
// once and cost at most the client's bounds.
void clouds(const std::vector<std::string>& names, const config::DatasourceSpec& ds,
            StageContext& ctx, ModuleResult& r) {
    using Clock = std::chrono::steady_clock;
    const auto dmi = datasource::read_dmi(ctx.root);
    const datasource::Client client(ctx.http);
    for (const auto* p : datasource::detection_order(names, dmi)) {
        const bool named = p->identified(dmi);
        const auto t0 = Clock::now();
        auto got = p->fetch(client, ctx.root, ctx.live);
        while (named && got && !*got && Clock::now() - t0 < ds.timeout) {
            std::this_thread::sleep_for(std::chrono::seconds(1));
            got = p->fetch(client, ctx.root, ctx.live);
        }
        const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
        if (!got) {
            r.error(fmt::format("datasource {}: {}", p->name, got.error().what()));
            if (named) return;
            continue;
        }
        if (!*got) {
            if (named)
                r.error(
                    fmt::format("datasource {}: the firmware names this machine as {} but "
                                "its metadata service did not answer in {:.0f} s",
                                p->name, p->name, secs));
            else
                r.note(fmt::format("datasource {}: no metadata service answered ({:.1f} s)",
                                   p->name, secs));
            continue;
        }
        apply(**got, ds, ctx, r);
        if (p->ready) {
            if (auto st = p->ready(client); !st)
                r.error(
                    fmt::format("datasource {}: reporting ready: {}", p->name, st.error().what()));
            else
                r.note(fmt::format("datasource {}: reported ready to the platform", p->name));
        }
        return;  // a machine is on one cloud
    }
}

}  // namespace

void datasource(const config::Step& s, StageContext& ctx, ModuleResult& r) {
    const auto& ds = s.datasource;
    if (ds.empty()) return;
    std::vector<std::string> cloud_names;
    for (const auto& p : ds.providers)
        if (datasource::find_provider(p)) cloud_names.push_back(p);
    if (!cloud_names.empty()) clouds(cloud_names, ds, ctx, r);
    for (const auto& p : ds.providers) {
        if (datasource::find_provider(p)) continue;
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
        if (auto vol = found ? std::nullopt : datasource::find_volume({"cidata"}, ctx.live)) {
            found = true;
            auto user = datasource::read_volume_file(*vol, "user-data");
            if (!user) {
                r.error(user.error().what());
                continue;
            }
            if (*user) store(ctx, r, ds.path, "40-nocloud.yaml", **user, vol->device);
            auto meta = datasource::read_volume_file(*vol, "meta-data");
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
