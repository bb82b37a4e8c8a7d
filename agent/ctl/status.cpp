// status, version, log-level, reload.
#include <cstdio>

#include "ballast_config.h"
#include "ctl.hpp"

namespace ballast::ctl {
namespace {

std::string field(const nlohmann::json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string() || it->get_ref<const std::string&>().empty()) return "-";
    return it->get<std::string>();
}

}  // namespace

int cmd_status(const GlobalOptions& g) {
    auto client = connect_agent(g);
    if (!client) return report_error(client.error());
    auto st = client->get_status();
    if (!st) return report_error(st.error());
    if (g.json) {
        print_json(*st);
        return kExitOk;
    }
    std::printf("Ballast agent %s\n", field(*st, "Version").c_str());
    if (auto it = st->find("Recovery"); it != st->end() && it->is_object())
        std::printf(
            "  IN RECOVERY: %s\n  (persistent is not mounted; the node's services do not "
            "run. Repair: agentctl reset --device DISK, agentctl encrypt, agentctl "
            "install --no-format; then reboot)\n",
            it->value("Reason", "").c_str());
    const std::pair<const char*, const char*> rows[] = {
        {"Booted slot", "BootedSlot"},
        {"Operation", "Operation"},
        {"Last error", "LastError"},
        {"Disk", "Disk"},
        {"Root", "Root"},
        {"Log level", "LogLevel"},
    };
    for (const auto& [label, key] : rows)
        std::printf("  %-12s %s\n", label, field(*st, key).c_str());
    if (auto it = st->find("Slots"); it != st->end() && it->is_array()) {
        std::printf("  Slots:\n");
        for (const auto& s : *it) {
            std::string flags;
            if (s.value("Booted", false)) flags += " booted";
            if (s.value("Primary", false)) flags += " primary";
            if (s.value("LastGood", false)) flags += " last-good";
            std::string state = s.value("State", "");
            if (state == "trial") state += fmt::format(" ({} tries left)", s.value("TriesLeft", 0));
            std::printf("    %s  %-22s %-16s%s\n", s.value("Slot", "").c_str(), state.c_str(),
                        s.value("Version", "").empty() ? "-" : s.value("Version", "").c_str(),
                        flags.c_str());
        }
    }
    if (auto it = st->find("NextBoot"); it != st->end() && it->is_object())
        std::printf("  Next boot:  %s%s (%s)\n", it->value("Slot", "").c_str(),
                    it->value("Recovery", false) ? ", recovery entry" : "",
                    it->value("Reason", "").c_str());
    if (auto it = st->find("Upgrade"); it != st->end() && it->is_object()) {
        const auto& u = *it;
        std::printf("  Upgrade:     %s %s -> %s (slot %s, %s)\n", u.value("State", "").c_str(),
                    u.value("FromVersion", "").empty() ? "-" : u.value("FromVersion", "").c_str(),
                    u.value("Version", "").c_str(), u.value("Target", "").c_str(),
                    u.value("Updated", "").c_str());
        if (!u.value("Error", "").empty())
            std::printf("               %s\n", u.value("Error", "").c_str());
    }
    if (auto it = st->find("Progress"); it != st->end() && it->is_object() && !it->empty())
        std::printf("  Progress:    %s %.0f%%\n", it->value("Phase", "").c_str(),
                    it->value("Percent", 0.0));
    if (st->value("RebootRequired", false))
        std::printf("  Reboot required: the boot control changed since this boot\n");
    if (st->value("RecoveryNext", false))
        std::printf("  Recovery:    the next boot is a recovery boot (agentctl recovery)\n");
    if (st->value("ResetPending", false))
        std::printf("  Factory reset pending: %s wiped at the next boot%s\n",
                    st->value("ResetWhat", "persistent").c_str(),
                    st->value("ResetPoweroff", false) ? ", then power off" : "");
    if (auto it = st->find("RefusedVersions"); it != st->end() && it->is_array())
        for (const auto& r : *it)
            std::printf("  Refused:     %s (until agentctl upgrade --force): %s\n",
                        r.value("Version", "").c_str(), r.value("Reason", "").c_str());
    if (auto it = st->find("BootControlError"); it != st->end())
        std::printf("  Boot control: %s\n", it->get<std::string>().c_str());
    if (auto it = st->find("Stages"); it != st->end() && it->is_array() && !it->empty()) {
        std::printf("  Stages (last run):\n");
        for (const auto& s : *it)
            std::printf("    %-12s %s  %d changed, %d unchanged, %d skipped, %d failed (%.1f ms)\n",
                        s.value("Stage", "").c_str(), s.value("StartedAt", "").c_str(),
                        s.value("Changed", 0), s.value("Unchanged", 0), s.value("Skipped", 0),
                        s.value("Failed", 0), s.value("DurationMs", 0.0));
    }
    return kExitOk;
}

int cmd_version(const GlobalOptions& g) {
    nlohmann::json agent = nullptr;
    if (auto client = connect_agent(g)) {
        if (auto st = client->get_status()) agent = (*st)["Version"];
    }
    if (g.json) {
        print_json({{"agentctl", BALLAST_VERSION}, {"ballast-agent", agent}});
    } else {
        std::printf("agentctl %s\n", BALLAST_VERSION);
        std::printf("ballast-agent %s\n",
                    agent.is_string() ? agent.get<std::string>().c_str() : "(not reachable)");
    }
    return kExitOk;
}

int cmd_log_level(const GlobalOptions& g, const std::string& level) {
    auto client = connect_agent(g);
    if (!client) return report_error(client.error());
    if (!level.empty()) {
        if (auto r = client->set_string_property("LogLevel", level); !r)
            return report_error(r.error());
    }
    auto st = client->get_status();
    if (!st) return report_error(st.error());
    if (g.json)
        print_json({{"LogLevel", (*st)["LogLevel"]}});
    else
        std::printf("%s\n", field(*st, "LogLevel").c_str());
    return kExitOk;
}

int cmd_reload(const GlobalOptions& g) {
    auto client = connect_agent(g);
    if (!client) return report_error(client.error());
    if (auto r = client->call_void("Reload"); !r) return report_error(r.error());
    return kExitOk;
}

}  // namespace ballast::ctl
