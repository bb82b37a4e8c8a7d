// k3s: the built-in step of the boot and reconcile stages. Renders k3s's config, unit and
// environment from the cloud-config (k3s/render.hpp), writes what differs, and restarts k3s
// only when something it reads changed; otherwise it is left alone (started if it is not
// running). The binary comes from the image or from the artifact named in agent.yaml.
#include <nlohmann/json.hpp>

#include "ballast/core/files.hpp"
#include "ballast/k3s/render.hpp"
#include "ballast/k3s/state.hpp"
#include "ballast/stages/modules.hpp"
#include "ballast/system/systemd.hpp"
#include "ballast/system/units.hpp"

namespace ballast::stages::modules {
namespace {

constexpr const char* kLocalBinary = "/usr/local/bin/k3s";

// The binary: the configured artifact (fetched to /usr/local/bin, persistent, when missing or
// different), else the image's.
std::optional<std::string> ensure_binary(StageContext& ctx, ModuleResult& r) {
    if (!ctx.k3s_binary.url.empty()) {
        config::Step fetch;
        config::DownloadSpec d;
        d.path = kLocalBinary;
        d.url = ctx.k3s_binary.url;
        d.sha256 = ctx.k3s_binary.sha256;
        d.mode = 0755;
        fetch.downloads.push_back(d);
        const size_t errors = r.errors.size();
        downloads(fetch, ctx, r);
        if (r.errors.size() != errors) return std::nullopt;
        return std::string(kLocalBinary);
    }
    for (const char* p : {kLocalBinary, "/usr/bin/k3s"}) {
        auto st = stat_beneath(ctx.root, p);
        if (st && *st && S_ISREG((*st)->st_mode)) return std::string(p);
    }
    r.error(
        "no k3s binary: ship /usr/local/bin/k3s or /usr/bin/k3s in the image, or set "
        "k3s.binary_url and k3s.binary_sha256 in agent.yaml");
    return std::nullopt;
}

}  // namespace

void k3s(const config::Config& cfg, StageContext& ctx, ModuleResult& r) {
    auto rendering = k3s::render(cfg);
    if (!rendering) {
        r.error(rendering.error().what());
        return;
    }
    const auto& k = *rendering;
    if (k.role == k3s::Role::none) return;
    auto binary = ensure_binary(ctx, r);
    if (!binary) return;
    bool changed = !r.changes.empty(), unit_changed = false;
    auto ensure = [&](const std::string& path, const std::string& content, mode_t mode) {
        auto c = ensure_file(ctx.root, path, content, mode);
        if (!c) {
            r.error(c.error().what());
            return false;
        }
        if (*c) r.change("wrote " + path);
        changed = changed || *c;
        return *c;
    };
    const std::string unit_path = "/etc/systemd/system/" + k.unit;
    unit_changed = ensure(unit_path, k3s::unit_file(k, *binary), 0644);
    auto old_env = read_beneath(ctx.root, unit_path + ".env");
    if (!old_env) {
        r.error(old_env.error().what());
        return;
    }
    ensure(unit_path + ".env", k3s::env_file(k, old_env->value_or("")), 0600);
    // The token may be in it: readable by root only, as the installer leaves it.
    ensure("/etc/rancher/k3s/config.yaml", k.config_yaml(), 0600);
    if (k.kubevip_manifest) ensure(std::string(k3s::kKubeVipManifest), *k.kubevip_manifest, 0600);
    if (!r.errors.empty()) return;

    k3s::NodeState state{k.role, k.unit, k.server(), k.source, *binary};
    if (auto st = k3s::save_state(ctx.root, state); !st) r.error(st.error().what());

    const bool live = ctx.live && systemd::running();
    if (!live) {
        auto links = units::enable(ctx.root, k.unit);
        if (!links)
            r.error(links.error().what());
        else if (!links->empty())
            r.change("enabled " + k.unit);
        if (changed)
            r.change("restart " + k.unit + " (deferred: the root is not a running systemd)");
        return;
    }
    auto mgr = systemd::Manager::connect();
    if (!mgr) {
        r.error(mgr.error().what());
        return;
    }
    if (unit_changed && !r.check(mgr->reload())) return;
    auto enabled = mgr->enable({k.unit});
    if (!enabled)
        r.error(enabled.error().what());
    else if (*enabled)
        r.change("enabled " + k.unit);
    if (changed) {
        if (r.check(mgr->restart(k.unit))) r.change("restarted " + k.unit);
    } else {
        auto started = mgr->start(k.unit);
        if (!started)
            r.error(started.error().what());
        else if (*started)
            r.change("started " + k.unit);
    }
}

}  // namespace ballast::stages::modules
