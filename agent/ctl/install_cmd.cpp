// install: lay out a disk or image file and install a bundle on it (offline).
#include <cstdio>

#include "ballast/core/root.hpp"
#include "ballast/install/installer.hpp"
#include "ctl.hpp"

namespace ballast::ctl {

int cmd_install(const GlobalOptions& g, install::Options o) {
    if (!g.json) o.say = [](const std::string& s) { std::fprintf(stderr, "%s\n", s.c_str()); };
    // The TPM and policy for install.encrypted_partitions: this machine's agent.yaml, unless
    // --tpm2-device says otherwise.
    RootPrefix root(std::filesystem::absolute(g.root));
    auto settings = config::load_agent_settings(root(config::kDefaultAgentSettingsPath), false);
    if (!settings) return report_error(settings.error());
    if (o.tpm2_device.empty()) o.tpm2_device = settings->tpm.device;
    o.pcrs = settings->tpm.pcrs;
    o.root = std::filesystem::absolute(g.root).string();
    o.pcr_bank = settings->tpm.pcr_bank;
    // A remote bundle: the credentials and TLS settings of this machine's agent.yaml.
    if (!settings->update.registry_auth.empty())
        o.registry_auth = root(settings->update.registry_auth).string();
    o.http.ca_file = settings->http.ca_file;
    o.http.proxy = settings->http.proxy;
    auto rep = install::run(o);
    if (!rep) return report_error(rep.error());
    if (g.json)
        print_json(rep->to_json());
    else
        std::fputs(rep->text().c_str(), stdout);
    std::fflush(stdout);
    if (rep->encryption && !rep->encryption->recovery_key.empty())
        if (auto st = hand_out_recovery_key(g, *settings, rep->encryption->recovery_keyslot,
                                            rep->encryption->recovery_key, false);
            !st)
            return report_error(st.error());
    if (auto st = install::finish(*rep); !st) return report_error(st.error());
    return kExitOk;
}

}  // namespace ballast::ctl
