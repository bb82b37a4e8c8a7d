#include "ballast/stages/plan.hpp"

#include <fmt/format.h>

namespace ballast::stages {
namespace {

void order_list(const std::vector<config::Step>& list, Plan& plan) {
    const size_t n = list.size();
    // deps[i]: indexes step i waits for. Without `after`, the previous step (yip).
    std::vector<std::vector<size_t>> deps(n);
    for (size_t i = 0; i < n; ++i) {
        if (list[i].after.empty()) {
            if (i > 0) deps[i].push_back(i - 1);
            continue;
        }
        for (const auto& a : list[i].after)
            for (size_t j = 0; j < n; ++j)
                if (j != i && (list[j].id == a || list[j].name == a)) deps[i].push_back(j);
    }
    std::vector<bool> done(n, false);
    size_t placed = 0;
    while (placed < n) {
        bool progress = false;
        for (size_t i = 0; i < n; ++i) {
            if (done[i]) continue;
            bool ready = true;
            for (size_t d : deps[i])
                ready = ready && done[d];
            if (!ready) continue;
            done[i] = true;
            plan.steps.push_back(&list[i]);
            ++placed;
            progress = true;
            break;  // restart from the top: keep file order among ready steps
        }
        if (!progress) {
            for (size_t i = 0; i < n; ++i)
                if (!done[i]) {
                    plan.errors.push_back(
                        fmt::format("step '{}': its after: dependencies form a cycle", list[i].id));
                    done[i] = true;
                    ++placed;
                }
        }
    }
}

}  // namespace

Plan plan_stage(const config::Config& cfg, std::string_view stage) {
    Plan plan;
    for (const auto& name :
         {std::string(stage) + ".before", std::string(stage), std::string(stage) + ".after"}) {
        auto it = cfg.stages.find(name);
        if (it != cfg.stages.end()) order_list(it->second, plan);
    }
    return plan;
}

std::vector<std::string> describe_step(const config::Step& s) {
    std::vector<std::string> d;
    auto mode = [](const std::optional<uint32_t>& m, uint32_t def) {
        return fmt::format("{:04o}", m.value_or(def));
    };
    if (!s.node.empty()) d.push_back("only on hosts matching /" + s.node + "/");
    if (!s.if_cmd.empty()) d.push_back("only if: " + s.if_cmd);
    if (!s.only_os.empty()) d.push_back("only on OS /" + s.only_os + "/");
    if (!s.only_arch.empty()) d.push_back("only on arch /" + s.only_arch + "/");
    if (!s.dns.nameservers.empty()) d.push_back("write " + s.dns.path);
    for (const auto& x : s.downloads)
        d.push_back(fmt::format("download {} to {}", x.url, x.path));
    for (const auto& x : s.ensure_entities)
        d.push_back("ensure entity in " + (x.path.empty() ? std::string("accounts") : x.path));
    for (const auto& x : s.directories)
        d.push_back(fmt::format("directory {} ({})", x.path, mode(x.mode, 0755)));
    for (const auto& x : s.files)
        d.push_back(fmt::format("{} {} ({})", x.append ? "append to" : "write", x.path,
                                mode(x.mode, 0644)));
    for (const auto& x : s.commands)
        d.push_back("run: " + x.text);
    for (const auto& x : s.delete_entities)
        d.push_back("delete entity in " + (x.path.empty() ? std::string("accounts") : x.path));
    if (!s.hostname.empty()) d.push_back("hostname " + s.hostname);
    for (const auto& [k, v] : s.sysctl)
        d.push_back(fmt::format("sysctl {}={}", k, v));
    for (const auto& u : s.users)
        d.push_back("user " + u.name);
    for (const auto& [u, keys] : s.authorized_keys)
        d.push_back(fmt::format("{} ssh key(s) for {}", keys.size(), u));
    for (const auto& m : s.modules)
        d.push_back("load module " + m);
    if (!s.timesyncd.empty()) d.push_back("timesyncd settings");
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
    if (!s.environment.empty()) d.push_back("environment in " + s.environment_file);
    if (!s.systemd_firstboot.empty()) d.push_back("systemd-firstboot");
    for (const auto& p : s.datasource.providers)
        d.push_back("datasource " + p);
    if (s.has_layout) d.push_back("layout (applied by install)");
    return d;
}

}  // namespace ballast::stages
