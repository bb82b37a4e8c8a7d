#include "ballast/stages/step_modules.hpp"

#include <fmt/format.h>

#include "ballast/stages/modules.hpp"

namespace ballast::stages {
namespace {

using Lines = std::vector<std::string>;

std::string mode(const std::optional<uint32_t>& m, uint32_t def) {
    return fmt::format("{:04o}", m.value_or(def));
}

std::string entity_place(const config::EntitySpec& x) {
    return x.path.empty() ? std::string("accounts") : x.path;
}

// yip's plugin order (git, packages and unpack_images are not run here; layout is install's).
const std::vector<StepModule>& table() {
    static const std::vector<StepModule> t = {
        {{"dns"},
         modules::dns,
         [](const config::Step& s, Lines& d) {
             if (!s.dns.nameservers.empty()) d.push_back("write " + s.dns.path);
         }},
        {{"downloads"},
         modules::downloads,
         [](const config::Step& s, Lines& d) {
             for (const auto& x : s.downloads)
                 d.push_back(fmt::format("download {} to {}", x.url, x.path));
         }},
        {{"ensure_entities"},
         modules::ensure_entities,
         [](const config::Step& s, Lines& d) {
             for (const auto& x : s.ensure_entities)
                 d.push_back("ensure entity in " + entity_place(x));
         }},
        {{"directories"},
         modules::directories,
         [](const config::Step& s, Lines& d) {
             for (const auto& x : s.directories)
                 d.push_back(fmt::format("directory {} ({})", x.path, mode(x.mode, 0755)));
         }},
        {{"files"},
         modules::files,
         [](const config::Step& s, Lines& d) {
             for (const auto& x : s.files)
                 d.push_back(fmt::format("{} {} ({})", x.append ? "append to" : "write", x.path,
                                         mode(x.mode, 0644)));
         }},
        {{"commands", "env", "timeout"},
         modules::commands,
         [](const config::Step& s, Lines& d) {
             for (const auto& x : s.commands)
                 d.push_back("run: " + x.text);
         }},
        {{"delete_entities"},
         modules::delete_entities,
         [](const config::Step& s, Lines& d) {
             for (const auto& x : s.delete_entities)
                 d.push_back("delete entity in " + entity_place(x));
         }},
        {{"hostname"},
         modules::hostname,
         [](const config::Step& s, Lines& d) {
             if (!s.hostname.empty()) d.push_back("hostname " + s.hostname);
         }},
        {{"sysctl"},
         modules::sysctl,
         [](const config::Step& s, Lines& d) {
             for (const auto& [k, v] : s.sysctl)
                 d.push_back(fmt::format("sysctl {}={}", k, v));
         }},
        {{"users"},
         modules::users,
         [](const config::Step& s, Lines& d) {
             for (const auto& u : s.users)
                 d.push_back("user " + u.name);
         }},
        {{"authorized_keys"},
         modules::authorized_keys,
         [](const config::Step& s, Lines& d) {
             for (const auto& [u, keys] : s.authorized_keys)
                 d.push_back(fmt::format("{} ssh key(s) for {}", keys.size(), u));
         }},
        {{"modules"},
         modules::kernel_modules,
         [](const config::Step& s, Lines& d) {
             for (const auto& m : s.modules)
                 d.push_back("load module " + m);
         }},
        {{"timesyncd"},
         modules::timesyncd,
         [](const config::Step& s, Lines& d) {
             if (!s.timesyncd.empty()) d.push_back("timesyncd settings");
         }},
        {{"systemctl"},
         modules::systemctl,
         [](const config::Step& s, Lines& d) {
             for (const auto& u : s.systemctl.enable)
                 d.push_back("enable " + u);
             for (const auto& u : s.systemctl.disable)
                 d.push_back("disable " + u);
             for (const auto& u : s.systemctl.mask)
                 d.push_back("mask " + u);
             for (const auto& u : s.systemctl.start)
                 d.push_back("start " + u);
             for (const auto& o : s.systemctl.overrides)
                 d.push_back("override for " + o.service);
         }},
        {{"environment", "environment_file"},
         modules::environment,
         [](const config::Step& s, Lines& d) {
             if (!s.environment.empty()) d.push_back("environment in " + s.environment_file);
         }},
        {{"systemd_firstboot"},
         modules::systemd_firstboot,
         [](const config::Step& s, Lines& d) {
             if (!s.systemd_firstboot.empty()) d.push_back("systemd-firstboot");
         }},
        {{"datasource"},
         modules::datasource,
         [](const config::Step& s, Lines& d) {
             for (const auto& p : s.datasource.providers)
                 d.push_back("datasource " + p);
         }},
        // The disk layout is install's (`agentctl install`); a stage only says so.
        {{"layout"},
         [](const config::Step& s, StageContext&, ModuleResult& m) {
             if (s.has_layout) m.note("layout: applied by `agentctl install`, not by stages");
         },
         [](const config::Step& s, Lines& d) {
             if (s.has_layout) d.push_back("layout (applied by install)");
         }},
    };
    return t;
}

}  // namespace

std::span<const StepModule> step_modules() {
    return table();
}

}  // namespace ballast::stages
