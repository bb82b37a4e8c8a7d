// systemctl: enable, disable, mask, start (yip's order), then overrides. On the running system
// through systemd's D-Bus API; on an image root, the same symlinks `systemctl --root` makes.
#include "ballast/core/files.hpp"
#include "ballast/stages/modules.hpp"
#include "ballast/system/systemd.hpp"
#include "ballast/system/units.hpp"

namespace ballast::stages::modules {
namespace {

void offline(const char* verb, const std::vector<std::string>& units, StageContext& ctx,
             ModuleResult& r,
             Result<std::vector<std::string>> (*fn)(const RootPrefix&, const std::string&)) {
    for (const auto& u : units) {
        auto links = fn(ctx.root, u);
        if (!links)
            r.error(fmt::format("{} {}: {}", verb, u, links.error().what()));
        else if (!links->empty())
            r.change(fmt::format("{} {}",
                                 verb == std::string("enable")    ? "enabled"
                                 : verb == std::string("disable") ? "disabled"
                                                                  : "masked",
                                 units::normalize_name(u)));
    }
}

}  // namespace

void systemctl(const config::Step& s, StageContext& ctx, ModuleResult& r) {
    const auto& sc = s.systemctl;
    if (sc.empty()) return;
    const bool live = ctx.live && systemd::running();
    std::optional<systemd::Manager> mgr;
    if (live) {
        auto m = systemd::Manager::connect();
        if (!m) {
            r.error(m.error().what());
            return;
        }
        mgr.emplace(std::move(*m));
        auto run = [&](const char* verb, const std::vector<std::string>& units, auto method) {
            for (const auto& u : units) {
                auto changed = ((*mgr).*method)(std::vector<std::string>{units::normalize_name(u)});
                if (!changed)
                    r.error(fmt::format("{} {}: {}", verb, u, changed.error().what()));
                else if (*changed)
                    r.change(fmt::format("{} {}", verb, units::normalize_name(u)));
            }
        };
        run("enable", sc.enable, &systemd::Manager::enable);
        run("disable", sc.disable, &systemd::Manager::disable);
        run("mask", sc.mask, &systemd::Manager::mask);
    } else {
        offline("enable", sc.enable, ctx, r, units::enable);
        offline("disable", sc.disable, ctx, r, units::disable);
        offline("mask", sc.mask, ctx, r, units::mask);
    }
    bool overrides_changed = false;
    for (const auto& o : sc.overrides) {
        std::string svc = units::normalize_name(o.service);
        std::string name = o.name.empty() ? "override-ballast.conf" : o.name;
        if (name.size() < 5 || name.compare(name.size() - 5, 5, ".conf") != 0) name += ".conf";
        if (name.find('/') != std::string::npos || svc.find('/') != std::string::npos) {
            r.error("override: names must not contain '/'");
            continue;
        }
        auto changed =
            ensure_file(ctx.root, "/etc/systemd/system/" + svc + ".d/" + name, o.content, 0644);
        if (!changed)
            r.error(changed.error().what());
        else if (*changed) {
            r.change("wrote override " + name + " for " + svc);
            overrides_changed = true;
        }
    }
    if (live && overrides_changed) r.check(mgr->reload());
    if (!sc.start.empty()) {
        if (!live) {
            r.note("start: not started (the root is not a running systemd)");
        } else {
            for (const auto& u : sc.start) {
                auto started = mgr->start(units::normalize_name(u));
                if (!started)
                    r.error(fmt::format("start {}: {}", u, started.error().what()));
                else if (*started)
                    r.change("started " + units::normalize_name(u));
            }
        }
    }
}

}  // namespace ballast::stages::modules
