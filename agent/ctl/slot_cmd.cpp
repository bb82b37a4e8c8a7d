// upgrade, health, rollback, recovery, mark-good, mark-bad: the daemon's slot operations.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "ballast/core/json.hpp"
#include "ballast/update/source.hpp"
#include "ctl.hpp"

namespace ballast::ctl {
namespace {

constexpr uint64_t kSixHours = 6ull * 3600 * 1000 * 1000;

std::string human_bytes(double b) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4) {
        b /= 1024;
        ++u;
    }
    return fmt::format("{:.1f} {}", b, units[u]);
}

std::string human_eta(double s) {
    if (s < 0 || !std::isfinite(s)) return "--:--";
    const auto t = uint64_t(s + 0.5);
    return t >= 3600 ? fmt::format("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60)
                     : fmt::format("{:02}:{:02}", t / 60, t % 60);
}

// One line, redrawn in place: "writing  [#####.....]  52%  532.0 MiB/1.0 GiB  210.3 MiB/s  ETA
// 00:02".
void draw_bar(const nlohmann::json& p) {
    const double pct = p.value("percent", 0.0);
    constexpr int kWidth = 30;
    const int fill = std::clamp(int(pct * kWidth / 100), 0, kWidth);
    std::string bar(size_t(fill), '#');
    bar.append(size_t(kWidth - fill), '.');
    std::fprintf(
        stdout, "\r\033[K%-10s [%s] %3.0f%%  %s/%s  %s/s  ETA %s", p.value("phase", "").c_str(),
        bar.c_str(), pct, human_bytes(double(p.value("bytes", uint64_t(0)))).c_str(),
        human_bytes(double(p.value("total", uint64_t(0)))).c_str(),
        human_bytes(p.value("rate", 0.0)).c_str(), human_eta(p.value("eta", -1.0)).c_str());
    std::fflush(stdout);
}

}  // namespace

int cmd_upgrade(const GlobalOptions& g, const std::string& source, const UpgradeFlags& f) {
    std::string src = source;
    if (!update::is_url(src)) {
        std::error_code ec;
        // Only a definite "absent" is refused here; what we may not see, the daemon (root) may.
        if (!std::filesystem::exists(src, ec) && !ec) {
            std::fprintf(stderr, "agentctl: upgrade: %s: no such bundle\n", src.c_str());
            return kExitUsage;
        }
        src = std::filesystem::absolute(src).lexically_normal().string();
    }
    auto client = connect_agent(g);
    if (!client) return report_error(client.error());
    const bool tty = !g.json && ::isatty(STDOUT_FILENO);
    bool drawn = false;
    auto res = client->upgrade(
        src, {{"Force", f.force}, {"NoReboot", f.no_reboot}, {"DryRun", f.dry_run}},
        [&](const nlohmann::json& p) {
            if (g.json) {
                std::printf("%s\n", json_text(nlohmann::json{{"progress", p}}).c_str());
                std::fflush(stdout);
            } else if (tty) {
                draw_bar(p);
                drawn = true;
            }
        });
    if (drawn) std::printf("\n");
    if (!res) return report_error(res.error());
    const bool ok = res->value("ok", false);
    const std::string msg = res->value("message", "");
    if (g.json) std::printf("%s\n", res->dump().c_str());
    if (!ok) {
        std::fprintf(stderr, "agentctl: %s\n", msg.c_str());
    } else if (!g.json) {
        if (msg.rfind("already", 0) == 0)
            std::printf("%s; nothing to do\n", msg.c_str());
        else if (f.dry_run)
            std::printf("%s\n", msg.c_str());
        else
            std::printf("%s; %s\n", msg.c_str(),
                        f.no_reboot ? "it boots on trial at the next reboot" : "rebooting into it");
    }
    return ok ? kExitOk : kExitFailure;
}

int cmd_health(const GlobalOptions& g, bool no_reboot) {
    auto client = connect_agent(g);
    if (!client) return report_error(client.error());
    // At boot another job (a stage, a re-run upgrade) may hold the agent: wait for it rather
    // than leave the slot on trial for this whole boot. Bounded: 30 minutes.
    auto text = client->call_string("CheckHealth", {}, {{"NoReboot", no_reboot}}, kSixHours);
    for (int waited = 0; !text && text.error().code() == Errc::busy && waited < 30 * 60;
         waited += 2) {
        if (waited == 0)
            std::fprintf(stderr, "agentctl: %s; waiting\n", text.error().what().c_str());
        ::sleep(2);
        text = client->call_string("CheckHealth", {}, {{"NoReboot", no_reboot}}, kSixHours);
    }
    if (!text) return report_error(text.error());
    auto rep = nlohmann::json::parse(*text, nullptr, false);
    if (!rep.is_object()) {
        std::fprintf(stderr, "agentctl: health: the agent sent a report that is not JSON\n");
        return kExitFailure;
    }
    const bool ok = rep.value("ok", false);
    if (g.json) {
        print_json(rep);
    } else if (rep.contains("error")) {
        std::fprintf(stderr, "agentctl: health: %s\n", rep["error"].get<std::string>().c_str());
    } else {
        std::printf("health: %s (%s)\n", ok ? "passed" : "FAILED",
                    rep.value("summary", "").c_str());
        if (rep.value("committed", false)) std::printf("the booted slot is committed\n");
        if (rep.value("reboot", false))
            std::printf("the booted slot is marked bad; %s\n",
                        no_reboot ? "reboot to go back to the other slot" : "rebooting");
    }
    return ok ? kExitOk : kExitFailure;
}

namespace {

// A slot operation that takes only NoReboot and answers with the slot it acts on: the report
// as `json_key` (JSON) or `text` with the slot and what happens next.
int slot_switch(const GlobalOptions& g, const char* method, bool no_reboot, const char* json_key,
                const char* text, const char* later) {
    auto client = connect_agent(g);
    if (!client) return report_error(client.error());
    auto slot = client->call_string(method, {}, {{"NoReboot", no_reboot}});
    if (!slot) return report_error(slot.error());
    if (g.json)
        print_json({{json_key, *slot}, {"reboot", !no_reboot}});
    else
        std::printf("%s; %s\n", fmt::format(fmt::runtime(text), *slot).c_str(),
                    no_reboot ? later : "rebooting");
    return kExitOk;
}

}  // namespace

int cmd_rollback(const GlobalOptions& g, bool no_reboot) {
    return slot_switch(g, "Rollback", no_reboot, "primary", "slot {} is primary",
                       "it boots at the next reboot");
}

int cmd_recovery(const GlobalOptions& g, bool no_reboot) {
    return slot_switch(g, "Recovery", no_reboot, "recovery",
                       "the next boot is a recovery boot of slot {}", "reboot when ready");
}

int cmd_mark(const GlobalOptions& g, bool good, const std::string& slot) {
    auto client = connect_agent(g);
    if (!client) return report_error(client.error());
    auto done = client->call_string(good ? "MarkGood" : "MarkBad", {slot});
    if (!done) return report_error(done.error());
    if (g.json)
        print_json({{"slot", *done}, {"state", good ? "good" : "bad"}});
    else
        std::printf("slot %s marked %s\n", done->c_str(), good ? "good" : "bad");
    return kExitOk;
}

}  // namespace ballast::ctl
