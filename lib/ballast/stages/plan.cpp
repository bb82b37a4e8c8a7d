#include "ballast/stages/plan.hpp"

#include "ballast/config/stage_names.hpp"
#include "ballast/stages/conditions.hpp"
#include "ballast/stages/step_modules.hpp"

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
    for (const auto& key : config::stage_run_order(stage, cfg)) {
        auto it = cfg.stages.find(key);
        if (it != cfg.stages.end()) order_list(it->second, plan);
    }
    return plan;
}

std::vector<std::string> describe_step(const config::Step& s) {
    std::vector<std::string> d;
    for (const auto& c : conditions())
        if (c.set(s)) d.push_back(c.describe(s));
    for (const auto& m : step_modules())
        m.describe(s, d);
    return d;
}

}  // namespace ballast::stages
