#include "ballast/config/stage_names.hpp"

#include <array>
#include <optional>
#include <set>

#include <fmt/format.h>

namespace ballast::config {
namespace {

constexpr std::array<std::string_view, 13> kOwn = {
    "rootfs",         "initramfs",      "fs",
    "boot",           "network",        "k3s-ready",
    "reconcile",      "before-install", "after-install",
    "before-upgrade", "after-upgrade",  "before-reset",
    "after-reset"};

// A Kairos event name that runs with one of Ballast's stages. `prefix`: the name is
// PREFIX<role>, any role (provider-kairos fires one per node role; users pick their own too).
struct Alias {
    std::string_view name;
    std::string_view stage;
    bool before;  // ahead of the stage's own steps, else after them
    bool prefix;
    bool needs_k3s;  // only where the config sets k3s up
    std::string_view when;
};

constexpr Alias kAliases[] = {
    {"kairos-install.pre", "before-install", true, false, false,
     "with the before-install stage, ahead of its steps (nothing is written to the disk yet)"},
    {"kairos-install.after", "after-install", false, false, false,
     "with the after-install stage, after its steps"},
    {"provider-kairos.bootstrap.before.", "boot", false, true, true,
     "in the boot stage, after its steps and just before k3s is set up (only where the config "
     "sets k3s up)"},
    {"provider-kairos.bootstrap.after.", "k3s-ready", false, true, false,
     "in the k3s-ready stage: once per boot, when k3s reports ready"},
};

// Kairos' trusted-boot (UKI) events, each with the stage that runs at its moment here.
struct Uki {
    std::string_view name, instead;
};
constexpr Uki kUki[] = {
    {"kairos-uki-install.pre", "kairos-install.pre"},
    {"kairos-uki-install.after", "kairos-install.after"},
    {"kairos-uki-reset.pre", "before-reset"},
    {"kairos-uki-reset.after", "after-reset"},
    {"kairos-uki-upgrade.pre", "before-upgrade"},
    {"kairos-uki-upgrade.after", "after-upgrade"},
};

// Kairos' chroot events, each with the stage without -chroot.
constexpr std::string_view kChroot[] = {"after-install-chroot", "after-upgrade-chroot",
                                        "after-reset-chroot"};

std::optional<std::string> never_runs(std::string_view base) {
    for (const auto& u : kUki)
        if (base == u.name)
            return fmt::format(
                "Kairos runs it only under its trusted boot (UKI); a Ballast node "
                "boots through GRUB, so it never runs ({} runs at that moment)",
                u.instead);
    for (auto c : kChroot)
        if (base == c)
            return fmt::format(
                "Kairos runs it chrooted in the new image to change it; Ballast's "
                "slot images are signed and never changed on the node, so it "
                "never runs (build the change into the image, or use {} or the "
                "boot stage)",
                c.substr(0, c.size() - std::string_view("-chroot").size()));
    return std::nullopt;
}

const Alias* alias_of(std::string_view base) {
    for (const auto& a : kAliases) {
        if (!a.prefix && base == a.name) return &a;
        if (a.prefix && base.size() > a.name.size() && base.starts_with(a.name) &&
            base.substr(a.name.size()).find('.') == std::string_view::npos)
            return &a;
    }
    return nullptr;
}

std::optional<StageName> classify_base(std::string_view base) {
    for (auto own : kOwn)
        if (base == own) return StageName{StageClass::own, std::string(base), ""};
    if (const Alias* a = alias_of(base))
        return StageName{StageClass::alias, std::string(base), std::string(a->when)};
    if (auto why = never_runs(base)) return StageName{StageClass::never, std::string(base), *why};
    return std::nullopt;
}

// Kairos' provider fires bootstrap stages for the node's own role: a master's steps do not run on
// a worker. Role names Kairos does not use (k3s-ready in its docs' example) run on every node.
bool role_runs_here(std::string_view role, const Config& cfg) {
    const bool server = cfg.k3s.enabled || (cfg.k3os.present && cfg.k3os.server_url.empty());
    const bool agent = cfg.k3s_agent.enabled || (cfg.k3os.present && !cfg.k3os.server_url.empty());
    if (role == "master" || role == "server") return server;
    if (role == "worker" || role == "agent") return agent;
    return true;
}

}  // namespace

StageName classify_stage(std::string_view key) {
    // The whole key first: "kairos-install.after" is an event name, not a substage.
    if (auto n = classify_base(key)) return *n;
    for (std::string_view suffix : {".before", ".after"})
        if (key.ends_with(suffix))
            if (auto n = classify_base(key.substr(0, key.size() - suffix.size()))) return *n;
    return {StageClass::custom, std::string(key), ""};
}

std::span<const std::string_view> own_stages() {
    return kOwn;
}

bool wants_k3s(const Config& cfg) {
    return cfg.k3s.enabled || cfg.k3s_agent.enabled || cfg.k3os.present;
}

std::vector<std::string> stage_run_order(std::string_view stage, const Config& cfg) {
    std::vector<std::string> bases;
    for (const auto& a : kAliases)
        if (!a.prefix && a.before && a.stage == stage) bases.emplace_back(a.name);
    bases.emplace_back(stage);
    for (const auto& a : kAliases) {
        if (a.before || a.stage != stage || (a.needs_k3s && !wants_k3s(cfg))) continue;
        if (!a.prefix) {
            bases.emplace_back(a.name);
            continue;
        }
        std::set<std::string> roles;
        for (const auto& [key, steps] : cfg.stages) {
            auto n = classify_stage(key);
            if (n.cls == StageClass::alias && n.base.starts_with(a.name) &&
                role_runs_here(std::string_view(n.base).substr(a.name.size()), cfg))
                roles.insert(n.base);
        }
        bases.insert(bases.end(), roles.begin(), roles.end());
    }
    std::vector<std::string> keys;
    for (const auto& b : bases)
        for (std::string_view suffix : {".before", "", ".after"})
            keys.push_back(b + std::string(suffix));
    return keys;
}

}  // namespace ballast::config
