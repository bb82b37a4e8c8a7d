#include "ballast/health/checks.hpp"

#include <thread>

#include "ballast/core/process.hpp"
#include "ballast/system/systemd.hpp"

namespace ballast::health {

std::string Report::summary() const {
    if (ok)
        return checks.empty() ? "no checks configured"
                              : fmt::format("all {} checks passed", checks.size());
    std::string out;
    for (const auto& c : checks) {
        if (c.ok) continue;
        if (!out.empty()) out += "; ";
        out += c.name + ": " + c.detail;
    }
    return out;
}

nlohmann::json Report::to_json() const {
    auto list = nlohmann::json::array();
    for (const auto& c : checks)
        list.push_back({{"name", c.name}, {"ok", c.ok}, {"detail", c.detail}});
    return {{"ok", ok},
            {"rounds", rounds},
            {"seconds", seconds},
            {"summary", summary()},
            {"checks", list}};
}

std::vector<CheckResult> run_round(const health::Settings& h, const UnitState& unit_state,
                                   std::chrono::milliseconds time_left,
                                   const std::vector<Probe>& probes) {
    std::vector<CheckResult> out;
    for (const auto& u : h.units) {
        CheckResult c{"unit " + u, false, ""};
        auto st = unit_state(u);
        if (!st)
            c.detail = st.error().what();
        else if (*st == "active")
            c.ok = true;
        else
            c.detail = "is " + *st;
        out.push_back(std::move(c));
    }
    for (const auto& cmd : h.commands) {
        CheckResult c{"command " + cmd, false, ""};
        ProcessOptions p;
        p.argv = {"/bin/sh", "-c", cmd};
        // A hung check must not outlive the deadline.
        p.timeout = std::max(time_left, std::chrono::milliseconds(1000));
        p.max_capture = 64 * 1024;
        auto r = run_process(p);
        if (!r) {
            c.detail = r.error().what();
        } else if (r->success()) {
            c.ok = true;
        } else {
            std::string err = r->err.substr(0, 300);
            while (!err.empty() && (err.back() == '\n' || err.back() == ' '))
                err.pop_back();
            c.detail = r->describe() + (err.empty() ? "" : ": " + err);
        }
        out.push_back(std::move(c));
    }
    for (const auto& probe : probes)
        out.push_back(probe(time_left));
    return out;
}

Report assess(const health::Settings& h, const UnitState& unit_state,
              const std::vector<Probe>& probes) {
    using Clock = std::chrono::steady_clock;
    const auto start = Clock::now();
    const auto deadline = start + h.deadline;
    Report rep;
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        rep.checks = run_round(h, unit_state, left, probes);
        ++rep.rounds;
        rep.ok = std::all_of(rep.checks.begin(), rep.checks.end(),
                             [](const CheckResult& c) { return c.ok; });
        if (rep.ok || Clock::now() + h.interval >= deadline) break;
        std::this_thread::sleep_for(h.interval);
    }
    rep.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return rep;
}

Result<std::string> systemd_unit_state(const std::string& unit) {
    if (!systemd::running()) return fail(Errc::unavailable, "systemd is not running here");
    auto m = BALLAST_TRY(systemd::Manager::connect());
    return m.active_state(unit);
}

}  // namespace ballast::health
