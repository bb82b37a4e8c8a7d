// Modules that act on the running system only: kernel modules and systemd-firstboot (which
// works offline with --root too).
#include <sys/stat.h>

#include <fstream>
#include <set>
#include <sstream>

#include "ballast/core/files.hpp"
#include "ballast/core/process.hpp"
#include "ballast/core/text.hpp"
#include "ballast/stages/modules.hpp"

namespace ballast::stages::modules {

void kernel_modules(const config::Step& s, StageContext& ctx, ModuleResult& r) {
    if (s.modules.empty()) return;
    if (!ctx.live) {
        r.note("modules: not loaded (the root is not the running system)");
        return;
    }
    std::set<std::string> loaded;
    std::ifstream pm("/proc/modules");
    std::string line;
    while (std::getline(pm, line))
        loaded.insert(line.substr(0, line.find(' ')));
    for (const auto& entry : s.modules) {
        // "name param=value ..." as yip accepts.
        std::istringstream words(entry);
        std::vector<std::string> argv{"modprobe"};
        std::string w;
        while (words >> w)
            argv.push_back(w);
        if (argv.size() < 2) continue;
        std::string kname = argv[1];
        for (auto& c : kname)
            if (c == '-') c = '_';
        if (loaded.count(kname)) continue;
        ProcessOptions p;
        p.argv = argv;
        p.timeout = std::chrono::seconds(60);
        auto res = run_process(p);
        if (!res)
            r.error(res.error().what());
        else if (!res->success())
            r.error(fmt::format("modprobe {} {}: {}", argv[1], res->describe(), res->err));
        else
            r.change("loaded module " + argv[1]);
    }
}

void systemd_firstboot(const config::Step& s, StageContext& ctx, ModuleResult& r) {
    if (s.systemd_firstboot.empty()) return;
    // What systemd-firstboot may write; compared before and after to report a change.
    static const char* touched[] = {
        "/etc/locale.conf", "/etc/default/locale", "/etc/vconsole.conf", "/etc/hostname",
        "/etc/machine-id",  "/etc/shadow",         "/etc/kernel/cmdline"};
    auto snapshot = [&] {
        std::vector<std::string> snap;
        for (auto p : touched) {
            auto c = read_beneath(ctx.root, p);
            snap.push_back(c && *c ? **c : "");
        }
        auto lt = readlink_beneath(ctx.root, "/etc/localtime");
        snap.push_back(lt && *lt ? **lt : "");
        return snap;
    };
    auto before = snapshot();
    ProcessOptions p;
    p.argv = {"systemd-firstboot", "--root=" + ctx.root.base().string()};
    for (const auto& [k, v] : s.systemd_firstboot) {
        const auto key = ascii_lower(k);
        p.argv.push_back(v == "true" ? "--" + key : "--" + key + "=" + v);
    }
    std::sort(p.argv.begin() + 2, p.argv.end());
    p.timeout = std::chrono::seconds(60);
    auto res = run_process(p);
    if (!res) {
        r.error(res.error().what());
        return;
    }
    if (!res->success()) {
        r.error(fmt::format("systemd-firstboot {}: {}", res->describe(), res->err));
        return;
    }
    if (snapshot() != before) r.change("systemd-firstboot set up the node");
}

}  // namespace ballast::stages::modules
