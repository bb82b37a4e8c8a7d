// commands: `sh -c` inside the root, in order; a failing command is an error and the next one
// still runs (yip). Commands run on every apply: they are not counted as changes, since Ballast
// cannot see what they did.
#include <spdlog/spdlog.h>

#include "ballast/stages/modules.hpp"

namespace ballast::stages::modules {

void commands(const config::Step& s, StageContext& ctx, ModuleResult& r) {
    if (s.commands.empty()) return;
    std::vector<std::string> env;
    for (const auto& [k, v] : s.command_env)
        env.push_back(k + "=" + v);
    size_t ok = 0;
    for (const auto& cmd : s.commands) {
        auto res = run_shell(ctx, cmd, {env, s.command_timeout, s.id});
        if (!res) {
            r.error(fmt::format("'{}': {}", cmd, res.error().what()));
            continue;
        }
        if (!res->success()) {
            std::string tail = res->err.empty() ? res->out : res->err;
            if (tail.size() > 500) tail = "..." + tail.substr(tail.size() - 500);
            while (!tail.empty() && tail.back() == '\n')
                tail.pop_back();
            r.error(
                fmt::format("'{}' {}{}", cmd, res->describe(), tail.empty() ? "" : ": " + tail));
            continue;
        }
        ++ok;
    }
    r.note(fmt::format("{} of {} command{} ran successfully", ok, s.commands.size(),
                       s.commands.size() == 1 ? "" : "s"));
}

}  // namespace ballast::stages::modules
