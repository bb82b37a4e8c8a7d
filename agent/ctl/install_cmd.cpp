// install: lay out a disk or image file and install a bundle on it (offline); reset: give such
// a disk back the state of a fresh install.
#include <cstdio>

#include "ballast/core/root.hpp"
#include "ballast/install/installer.hpp"
#include "ballast/install/reset.hpp"
#include "ctl.hpp"

namespace ballast::ctl {
namespace {

// This machine's agent.yaml: the TPM and policy a new encrypted partition is sealed to.
Result<config::AgentSettings> agent_settings(const GlobalOptions& g) {
    RootPrefix root(std::filesystem::absolute(g.root));
    return config::load_agent_settings(root(config::kDefaultAgentSettingsPath), false);
}

// The report, then the new recovery key (shown once, and escrowed as agent.yaml says).
template <class R>
int print_report(const GlobalOptions& g, const config::AgentSettings& settings, const R& rep) {
    if (g.json)
        print_json(rep.to_json());
    else
        std::fputs(rep.text().c_str(), stdout);
    std::fflush(stdout);
    if (rep.encryption && !rep.encryption->recovery_key.empty())
        if (auto st = hand_out_recovery_key(g, settings, rep.encryption->recovery_keyslot,
                                            rep.encryption->recovery_key, false);
            !st)
            return report_error(st.error());
    return kExitOk;
}

// The running node cannot wipe what it has mounted: the daemon stores the request, and the
// initramfs does the reset at the next boot. Choices not given are left out of the call: the
// daemon takes them from the node's reset: block.
int reset_this_node(const GlobalOptions& g, const install::ResetOptions& o,
                    std::optional<bool> reboot, std::optional<bool> graceful, bool force) {
    for (auto [set, flag] :
         {std::pair{!o.config_files.empty(), "--config"},
          std::pair{!o.tpm2_device.empty(), "--tpm2-device"}, std::pair{o.dry_run, "--dry-run"}})
        if (set)
            return report_error(Error(Errc::invalid_argument,
                                      fmt::format("{} needs --device (a disk reset now); this "
                                                  "node's reset happens at its next boot",
                                                  flag)));
    nlohmann::json opts = {{"Encrypt", o.encrypt}};
    for (auto [name, v] :
         {std::pair{"ResetOem", o.reset_oem}, std::pair{"ResetPersistent", o.reset_persistent},
          std::pair{"PowerOff", o.poweroff}})
        if (v) opts[name] = *v;
    if (reboot) opts["NoReboot"] = !*reboot;
    if (graceful) opts["Graceful"] = *graceful;
    if (force) opts["Force"] = true;
    auto client = connect_agent(g);
    if (!client) return report_error(client.error());
    auto answer = client->reset(opts);
    if (!answer) return report_error(answer.error());
    if (g.json)
        print_json(*answer);
    else
        std::printf("factory reset: %s wiped at the next boot; %s\n",
                    (*answer)["reset"].get<std::string>().c_str(),
                    (*answer)["reboot"].get<bool>() ? "rebooting" : "reboot when ready");
    return kExitOk;
}

std::function<void(const std::string&)> progress(const GlobalOptions& g) {
    if (g.json) return {};
    return [](const std::string& s) { std::fprintf(stderr, "%s\n", s.c_str()); };
}

}  // namespace

int cmd_install(const GlobalOptions& g, install::Options o) {
    o.say = progress(g);
    auto settings = agent_settings(g);
    if (!settings) return report_error(settings.error());
    // --tpm2-device wins over agent.yaml.
    if (o.tpm2_device.empty()) o.tpm2_device = settings->tpm.device;
    o.pcrs = settings->tpm.pcrs;
    o.root = std::filesystem::absolute(g.root).string();
    o.pcr_bank = settings->tpm.pcr_bank;
    // A remote bundle: the credentials and TLS settings of this machine's agent.yaml.
    RootPrefix root(std::filesystem::absolute(g.root));
    if (!settings->update.registry_auth.empty())
        o.registry_auth = root(settings->update.registry_auth).string();
    o.http.ca_file = settings->http.ca_file;
    o.http.proxy = settings->http.proxy;
    auto rep = install::run(o);
    if (!rep) return report_error(rep.error());
    if (int rc = print_report(g, *settings, *rep); rc != kExitOk) return rc;
    if (auto st = install::finish(*rep); !st) return report_error(st.error());
    return kExitOk;
}

int cmd_reset(const GlobalOptions& g, install::ResetOptions o, std::optional<bool> reboot,
              std::optional<bool> graceful, bool force) {
    if (o.device.empty()) return reset_this_node(g, o, reboot, graceful, force);
    if (reboot || o.poweroff || graceful || force)
        return report_error(Error(Errc::invalid_argument,
                                  fmt::format("{} is for this node's reset; --device resets now",
                                              reboot       ? "--reboot/--no-reboot"
                                              : o.poweroff ? "--poweroff"
                                                           : "--graceful/--force")));
    o.say = progress(g);
    auto settings = agent_settings(g);
    if (!settings) return report_error(settings.error());
    if (o.tpm2_device.empty()) o.tpm2_device = settings->tpm.device;
    o.pcrs = settings->tpm.pcrs;
    o.pcr_bank = settings->tpm.pcr_bank;
    auto rep = install::reset(o);
    if (!rep) return report_error(rep.error());
    if (int rc = print_report(g, *settings, *rep); rc != kExitOk) return rc;
    if (rep->stage_error)
        return report_error(Error(Errc::failed, "after-reset stage: " + *rep->stage_error));
    return kExitOk;
}

}  // namespace ballast::ctl
