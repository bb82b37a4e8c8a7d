// datasource: fetch more cloud-config into /run/ballast/config.d (a config source, read by the
// stages that follow). Providers: config_url (https); nocloud/cdrom (a volume labelled cidata,
// or cloud-init's seed folder /var/lib/cloud/seed/nocloud); the clouds of datasource/providers
// (aws, gcp, azure, openstack, digitalocean, hetzner, vultr, scaleway, equinix): the first whose
// service answers, those the DMI data names first. A cloud's user-data is decoded
// (datasource/userdata: gzip, MIME multipart); its cloud-config parts are stored, its host name
// and SSH keys become a config of their own, its own network description becomes a network
// config file (datasource/network), and its scripts run once per instance, as cloud-init runs
// user scripts.
#include <chrono>
#include <thread>

#include "ballast/config/loader.hpp"
#include "ballast/config/sources.hpp"
#include "ballast/core/files.hpp"
#include "ballast/core/json.hpp"
#include "ballast/core/process.hpp"
#include "ballast/core/text.hpp"
#include "ballast/datasource/network.hpp"
#include "ballast/datasource/providers.hpp"
#include "ballast/datasource/userdata.hpp"
#include "ballast/datasource/volume.hpp"
#include "ballast/stages/executor.hpp"
#include "ballast/stages/modules.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <set>

namespace ballast::stages::modules {
namespace {

// What this step stored that is new to this boot: those documents' steps catch up (below).
using Stored = std::set<std::string>;

// Stores fetched config under `dir`; a document without a header is refused (it would be
// ignored at load, silently in Kairos). True when the file is in place.
bool store(StageContext& ctx, ModuleResult& r, Stored& stored, const std::string& dir,
           const std::string& name, const std::string& text, const std::string& origin) {
    if (config::detect_kind(text, "") == config::SourceKind::no_header) {
        r.error(http::redact(origin) + ": fetched config has no #cloud-config header; not used");
        return false;
    }
    if (auto made = mkdirs_beneath(ctx.root, dir, 0700); !made) {
        r.error(made.error().what());
        return false;
    }
    const std::string path = dir + "/" + name;
    auto changed = ensure_file(ctx.root, path, text, 0600);
    if (!changed) {
        r.error(changed.error().what());
        return false;
    }
    if (*changed) {
        r.change(fmt::format("stored config from {} in {}", http::redact(origin), path));
        stored.insert(path);
    }
    return true;
}

// Removes a file this step stored before; false when there was none.
bool remove_stored(StageContext& ctx, ModuleResult& r, const std::string& path) {
    auto st = stat_beneath(ctx.root, path);
    if (!st || !*st) return false;
    if (auto gone = remove_beneath(ctx.root, path); !gone)
        r.error(gone.error().what());
    else
        r.change("removed " + path);
    return true;
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

// Part N of a cloud's user-data: names that sort in part order (later parts win, as cloud-init
// merges them).
std::string part_name(std::string_view provider, size_t n) {
    return fmt::format("40-{}-{:02}.yaml", provider, n);
}

// cloud-init's local-hostname: the first label; an IPv4 address becomes ip-a-b-c-d. Anything
// that is not a host name after that is dropped (with a note).
std::string short_hostname(std::string_view h) {
    std::string s(trim(h));
    if (!s.empty() && s.find_first_not_of("0123456789.") == std::string::npos &&
        std::count(s.begin(), s.end(), '.') == 3) {
        std::replace(s.begin(), s.end(), '.', '-');
        return "ip-" + s;
    }
    s = s.substr(0, s.find('.'));
    const bool ok = !s.empty() && s.size() <= 63 && s.front() != '-' && s.back() != '-' &&
                    s.find_first_not_of(
                        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                        "0123456789-") == std::string::npos;
    return ok ? s : "";
}

// cloud-init's scripts-user: each script once per instance, by path (its #! line picks the
// interpreter), with the step's timeout. The marker is written before the scripts run: a script
// that reboots the machine (or a power cut) does not make them run at every boot.
void run_scripts(const config::Step& s, const datasource::Metadata& m,
                 const std::vector<std::string>& scripts, StageContext& ctx, ModuleResult& r) {
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
    for (size_t i = 0; i < scripts.size(); ++i)
        if (auto wrote =
                ensure_file(ctx.root, fmt::format("{}/script-{}", dir, i + 1), scripts[i], 0700);
            !wrote) {
            r.error(wrote.error().what());
            return;
        }
    if (!r.check(write_beneath(ctx.root, done, m.instance_id + "\n", 0600))) return;
    for (size_t i = 0; i < scripts.size(); ++i) {
        ShellOptions opts;
        opts.step_id = s.id;
        opts.timeout = s.command_timeout;
        auto ran = run_argv(ctx, {fmt::format("{}/script-{}", dir, i + 1)}, opts);
        if (!ran)
            r.error(fmt::format("datasource {}: user-data script {}: {}", m.provider, i + 1,
                                ran.error().what()));
        else if (!ran->success())
            r.error(fmt::format("datasource {}: user-data script {} {}", m.provider, i + 1,
                                ran->describe()));
        else
            r.change(fmt::format("ran user-data script {} from {}", i + 1, m.provider));
    }
}

// A NoCloud seed's network-config or a platform's (cloud-init network config, with or without the
// `network:` key around it) as a cloud-config document holding that block and nothing else, as
// cloud-init takes only the network config from that file. Empty when it does not parse (reported).
std::string network_document(const std::string& text, std::string& error) {
    try {
        auto y = YAML::Load(text);
        if (y.IsMap() && y["network"]) y = y["network"];
        if (!y.IsMap()) {
            error = "network-config: not a mapping";
            return "";
        }
        YAML::Emitter out;
        out << YAML::BeginMap << YAML::Key << "network" << YAML::Value << y << YAML::EndMap;
        return "#cloud-config\n" + std::string(out.c_str()) + "\n";
    } catch (const YAML::Exception& e) {
        error = fmt::format("network-config: not valid YAML: {}", e.what());
        return "";
    }
}

// The last platform network config that was used, kept across boots in one file (one write:
// the document never pairs with another platform's or instance's record): {"provider",
// "instance_id", "macs" (the NICs it names), "document"}.
constexpr const char* kLastNetwork = "/var/lib/ballast/datasource/platform-network.json";

std::vector<std::string> network_macs(const std::string& v1_json) {
    std::vector<std::string> out;
    const auto j = nlohmann::json::parse(v1_json, nullptr, false);
    if (!j.is_object() || !j.contains("config") || !j["config"].is_array()) return out;
    for (const auto& d : j["config"]) {
        // read_macs' form (Hetzner's come as given)
        auto mac = ascii_lower(json_field<std::string>(d, "mac_address", ""));
        if (json_field<std::string>(d, "type", "") == "physical" && !mac.empty())
            out.push_back(std::move(mac));
    }
    return out;
}

// The platform network config of the last boot, stored again for this one: the platform's
// answer could not be used (or nothing answered), and without it the network step would take
// the node's addresses away as config it no longer has. Only when it is still this machine's:
// saved for `provider` (and for `instance`, when the platform named one), on a machine that has
// every NIC it names (a disk cloned onto another machine does not bring its addresses along).
void keep_last_network(const config::Step& s, std::string_view provider, std::string_view instance,
                       const std::string& why, StageContext& ctx, ModuleResult& r, Stored& stored) {
    auto text = read_beneath(ctx.root, kLastNetwork);
    if (!text || !*text) return;
    const auto last = nlohmann::json::parse(**text, nullptr, false);
    const auto doc = json_field<std::string>(last, "document", "");
    if (doc.empty() || json_field<std::string>(last, "provider", "") != provider) return;
    if (!instance.empty() && json_field<std::string>(last, "instance_id", "") != instance) {
        r.note(
            fmt::format("datasource {}: the platform network config of the last boot was "
                        "another instance's; not used",
                        provider));
        return;
    }
    const auto macs = datasource::read_macs(ctx.root);
    for (const auto& mac : last.value("macs", nlohmann::json::array()))
        if (!mac.is_string() || !macs.count(mac.get<std::string>())) {
            r.note(
                fmt::format("datasource {}: the platform network config of the last boot names "
                            "a NIC this machine does not have; not used",
                            provider));
            return;
        }
    r.note(fmt::format("datasource {}: the platform network config of the last boot is used ({})",
                       provider, why));
    (void)store(ctx, r, stored, s.datasource.path, platform_network_file(provider), doc,
                kLastNetwork);
}

// The platform's network config (datasource/network.hpp) as a config file of its own, checked
// as the network step will read it, and kept for the next boots; or those files removed when the
// platform gives none. A document that cannot be used is an error, and the last good one stays
// in use; the rest of what the platform gave still applies.
void platform_network(const config::Step& s, const datasource::Metadata& m, StageContext& ctx,
                      ModuleResult& r, Stored& stored) {
    const std::string name = platform_network_file(m.provider);
    std::string error = m.network_error, doc;
    if (error.empty() && !m.network.empty()) {
        doc = network_document(m.network, error);
        const std::string at = s.datasource.path + "/" + name;
        std::vector<config::SourceFile> src{{at, doc, config::SourceKind::cloud_config}};
        if (!doc.empty()) {
            auto checked = config::load_sources(std::move(src), nlohmann::json::object());
            for (const auto& d : checked.diags.items())
                if (d.severity == config::Severity::error) {
                    error = fmt::format("{} (converted from {})", d.text(), http::redact(m.origin));
                    break;
                }
        }
    }
    if (!error.empty()) {
        r.error(fmt::format("datasource {}: network config: {} (not used)", m.provider, error));
        keep_last_network(s, m.provider, m.instance_id, "this one was not usable", ctx, r, stored);
        return;
    }
    if (!doc.empty()) {
        if (!store(ctx, r, stored, s.datasource.path, name, doc, m.origin)) return;
        const nlohmann::json last{{"provider", m.provider},
                                  {"instance_id", m.instance_id},
                                  {"macs", network_macs(m.network)},
                                  {"document", doc}};
        if (auto made = mkdirs_beneath(ctx.root, "/var/lib/ballast/datasource", 0700); !made)
            r.error(made.error().what());
        else if (auto kept = ensure_file(ctx.root, kLastNetwork, json_text(last) + "\n", 0600);
                 !kept)
            r.error(kept.error().what());
        return;
    }
    // The platform answered without network config (whichever platform was kept before).
    for (const auto& path : {s.datasource.path + "/" + name, std::string(kLastNetwork)})
        (void)remove_stored(ctx, r, path);
}

// The user-data's own host name outranks the platform's (cloud-init's rule). Its step runs in
// an earlier stage than this one at every boot: setting the platform's here would undo it.
bool sets_hostname(const std::vector<std::string>& docs) {
    for (const auto& doc : docs) {
        std::vector<config::SourceFile> src{{"user-data", doc, config::SourceKind::cloud_config}};
        const auto loaded = config::load_sources(std::move(src), nlohmann::json::object());
        for (const auto& [stage, steps] : loaded.config.stages)
            for (const auto& step : steps)
                if (!step.hostname.empty()) return true;
    }
    return false;
}

// What a cloud gave: the host name and SSH keys (for root) applied at once, whatever the
// user-data holds; its user-data's cloud-config parts stored as config sources
// (40-NAME-01.yaml, ...); its scripts run.
void apply(const config::Step& s, const datasource::Metadata& m, StageContext& ctx, ModuleResult& r,
           Stored& stored) {
    const auto& ds = s.datasource;
    for (const auto& passed : m.notes)
        r.note(fmt::format("datasource {}: {}", m.provider, passed));
    std::optional<Result<datasource::UserData>> decoded;
    if (m.user_data) decoded = datasource::decode_user_data(*m.user_data);
    config::Step meta;
    if (decoded && *decoded && sets_hostname((*decoded)->configs)) {
        if (!m.hostname.empty())
            r.note(
                fmt::format("datasource {}: the user-data sets the host name; the platform's "
                            "({}) is not used",
                            m.provider, m.hostname));
    } else {
        meta.hostname = short_hostname(m.hostname);
        if (meta.hostname.empty() && !m.hostname.empty())
            r.note(fmt::format("datasource {}: the platform's host name is not one; not set",
                               m.provider));
    }
    for (const auto& entry : m.ssh_keys)
        for (auto& key : nonempty_lines(entry))  // one entry may hold several keys
            if (!config::is_remote_key(key)) meta.authorized_keys["root"].push_back(std::move(key));
    hostname(meta, ctx, r);
    authorized_keys(meta, ctx, r);
    platform_network(s, m, ctx, r, stored);

    datasource::UserData ud;
    if (!decoded) {
        r.note(fmt::format("datasource {}: no user-data", m.provider));
    } else if (!*decoded) {
        r.error(fmt::format("datasource {}: {}", m.provider, decoded->error().what()));
        return;
    } else {
        ud = std::move(**decoded);
    }
    size_t n = 0;
    for (const auto& doc : ud.configs)
        (void)store(ctx, r, stored, ds.path, part_name(m.provider, ++n), doc, m.origin);
    // Parts the user-data no longer has.
    for (size_t k = n + 1; remove_stored(ctx, r, ds.path + "/" + part_name(m.provider, k)); ++k) {
    }
    for (const auto& why : ud.ignored)
        r.note(fmt::format("datasource {}: {}", m.provider, why));
    run_scripts(s, m, ud.scripts, ctx, r);
}

// The first cloud whose metadata service answers; false when none did. One the firmware names is
// waited for up to the step's timeout (its network may still be coming up; errors are retried too)
// and is an error when it never answers; the others are asked once, at most the client's bounds
// each, and an answer that is not their platform's is a note, not an error.
bool clouds(const config::Step& s, const std::vector<std::string>& names, StageContext& ctx,
            ModuleResult& r, Stored& stored) {
    using Clock = std::chrono::steady_clock;
    const auto dmi = datasource::read_dmi(ctx.root);
    const datasource::Client client(ctx.http);
    for (const auto* p : datasource::detection_order(names, dmi)) {
        const bool named = p->identified(dmi);
        const auto t0 = Clock::now();
        auto got = p->fetch(client, ctx.root, ctx.live);
        // Part of the platform's service missing (Azure's DVD without IMDS yet): asked again
        // while the timeout allows, then used as it is.
        while (named && (!got || !*got || (*got)->incomplete) &&
               Clock::now() - t0 < s.datasource.timeout) {
            std::this_thread::sleep_for(std::chrono::seconds(1));
            got = p->fetch(client, ctx.root, ctx.live);
        }
        const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
        if (!got) {
            if (named) {
                r.error(fmt::format("datasource {}: {}", p->name, got.error().what()));
                return false;
            }
            r.note(
                fmt::format("datasource {}: not this platform: {}", p->name, got.error().what()));
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
        apply(s, **got, ctx, r, stored);
        if (p->ready) {
            if (auto st = p->ready(client); !st)
                r.error(
                    fmt::format("datasource {}: reporting ready: {}", p->name, st.error().what()));
            else
                r.note(fmt::format("datasource {}: reported ready to the platform", p->name));
        }
        return true;  // a machine is on one cloud
    }
    return false;
}

void nocloud_network(const std::optional<std::string>& text, const std::string& origin,
                     const config::Step& s, StageContext& ctx, ModuleResult& r, Stored& stored) {
    if (!text || trim(*text).empty()) return;
    std::string error;
    auto doc = network_document(*text, error);
    if (doc.empty())
        r.error(fmt::format("{}: {}", origin, error));
    else
        (void)store(ctx, r, stored, s.datasource.path, "39-nocloud-network.yaml", doc, origin);
}

void nocloud(const std::string& p, const config::Step& s, StageContext& ctx, ModuleResult& r,
             Stored& stored) {
    const auto& ds = s.datasource;
    const std::string seed_dir = "/var/lib/cloud/seed/nocloud";
    auto seed = read_beneath(ctx.root, seed_dir + "/user-data");
    auto seed_net = read_beneath(ctx.root, seed_dir + "/network-config");
    if ((seed && *seed) || (seed_net && *seed_net)) {
        if (seed && *seed)
            (void)store(ctx, r, stored, ds.path, "40-nocloud.yaml", **seed, seed_dir);
        if (seed_net) nocloud_network(*seed_net, seed_dir, s, ctx, r, stored);
        return;
    }
    auto vol = datasource::find_volume({"cidata"}, ctx.live);
    if (!vol) {
        r.note("datasource " + p + ": no cidata volume or seed found");
        return;
    }
    auto user = datasource::read_volume_file(*vol, "user-data");
    if (!user) {
        r.error(user.error().what());
        return;
    }
    if (*user) (void)store(ctx, r, stored, ds.path, "40-nocloud.yaml", **user, vol->device);
    if (auto net = datasource::read_volume_file(*vol, "network-config"); !net)
        r.error(net.error().what());
    else
        nocloud_network(*net, vol->device, s, ctx, r, stored);
    auto meta = datasource::read_volume_file(*vol, "meta-data");
    if (meta && *meta) {
        auto h = meta_hostname(**meta);
        if (!h.empty())
            (void)store(ctx, r, stored, ds.path, "41-nocloud-meta.yaml",
                        "#cloud-config\nhostname: " + h + "\n", vol->device);
    }
}

// Fetched config takes effect at this boot, as cloud-init applies user-data once it has it: the
// stages that already ran (initramfs, fs, boot, up to this step's own) run again for the steps
// of the documents this step stored, with the whole config's blocks (the k3s step is idempotent
// and sees the fetched k3s settings). Datasource steps in fetched config do not run (no chains).
void catch_up(const Stored& stored, std::string_view own_stage, StageContext& ctx,
              ModuleResult& r) {
    if (stored.empty() || !ctx.reload_config) return;
    auto loaded = ctx.reload_config();
    if (!loaded) {
        r.error("fetched config: " + std::string(loaded.error().what()));
        return;
    }
    for (const auto& d : loaded->diags.items())
        if (d.severity == config::Severity::error && stored.count(d.pos.file)) r.error(d.text());
    config::Config only = loaded->config;
    for (auto& [stage, steps] : only.stages)
        std::erase_if(steps, [&](const config::Step& x) {
            return !stored.count(x.pos.file) || !x.datasource.empty();
        });
    const auto base = own_stage.substr(0, own_stage.find('.'));
    for (std::string_view stage : {"initramfs", "fs", "boot", "network"}) {
        auto res = run_stage(only, stage, ctx);
        for (const auto& step : res.steps) {
            for (const auto& c : step.changes)
                r.change(fmt::format("{} ({} stage, fetched): {}", step.id, stage, c));
            for (const auto& e : step.errors)
                r.error(fmt::format("{} ({} stage, fetched): {}", step.id, stage, e));
        }
        if (stage == base) break;
    }
}

}  // namespace

void datasource(const config::Step& s, StageContext& ctx, ModuleResult& r) {
    const auto& ds = s.datasource;
    if (ds.empty()) return;
    Stored stored;
    std::vector<std::string> cloud_names;
    for (const auto& p : ds.providers)
        if (datasource::find_provider(p)) cloud_names.push_back(p);
    // Nothing answered: the last platform network config stays only where the firmware still
    // names that platform.
    if (!cloud_names.empty() && !clouds(s, cloud_names, ctx, r, stored)) {
        const auto dmi = datasource::read_dmi(ctx.root);
        for (const auto& p : cloud_names)
            if (const auto* prov = datasource::find_provider(p); prov->identified(dmi))
                keep_last_network(s, prov->name, "", "no metadata service answered", ctx, r,
                                  stored);
    }
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
                (void)store(ctx, r, stored, ds.path, "50-config-url.yaml", *body, ds.config_url);
        } else if (p == "nocloud" || p == "cdrom") {
            nocloud(p, s, ctx, r, stored);
        }
    }
    catch_up(stored, s.stage, ctx, r);
    if (!stored.empty()) ctx.sources_changed = true;
}

}  // namespace ballast::stages::modules
