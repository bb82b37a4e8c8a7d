// install: lay out a disk or image file and install a bundle on it (offline).
#include <cstdio>

#include "ballast/install/installer.hpp"
#include "ctl.hpp"

namespace ballast::ctl {

int cmd_install(const GlobalOptions& g, install::Options o) {
    if (!g.json) o.say = [](const std::string& s) { std::fprintf(stderr, "%s\n", s.c_str()); };
    auto rep = install::run(o);
    if (!rep) return report_error(rep.error());
    if (g.json)
        print_json(rep->to_json());
    else
        std::fputs(rep->text().c_str(), stdout);
    std::fflush(stdout);
    if (auto st = install::finish(*rep); !st) return report_error(st.error());
    return kExitOk;
}

}  // namespace ballast::ctl
