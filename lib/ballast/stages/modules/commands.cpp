// commands: `sh -c` inside the root, in order; a failing command is an error and the next one
// still runs (yip). Commands run on every apply: they are not counted as changes, since Ballast
// cannot see what they did.
//
// Several commands without a timeout run in one shell, each in its own subshell (so `exit`,
// `cd` or `set -e` in one cannot touch the next), as cloud-init runs runcmd as one script: one
// shell start instead of one per command. A per-command marker line carries each exit status.
#include <spdlog/spdlog.h>

#include <array>

#include "ballast/core/encoding.hpp"
#include "ballast/core/secret.hpp"
#include "ballast/stages/modules.hpp"

namespace ballast::stages::modules {
namespace {

std::string tail_of(std::string text) {
    if (text.size() > 500) text = "..." + text.substr(text.size() - 500);
    while (!text.empty() && text.back() == '\n')
        text.pop_back();
    return text;
}

void report(ModuleResult& r, const std::string& cmd, const std::string& how, const std::string& out,
            const std::string& err) {
    std::string tail = tail_of(err.empty() ? out : err);
    r.error(fmt::format("'{}' {}{}", cmd, how, tail.empty() ? "" : ": " + tail));
}

// Splits one stream of a batch at its marker lines: segment i is command i's output.
std::vector<std::string> split_segments(const std::string& text, const std::string& mark, size_t n,
                                        std::vector<int>* rcs) {
    std::vector<std::string> seg(n);
    size_t cur = 0, i = 0;
    std::string acc;
    while (i < text.size()) {
        size_t j = text.find('\n', i);
        if (j == std::string::npos) j = text.size();
        std::string_view line(text.data() + i, j - i);
        i = j + 1;
        if (line.rfind(mark, 0) == 0) {
            unsigned idx = 0;
            int rc = -1;
            if (std::sscanf(std::string(line.substr(mark.size())).c_str(), " %u %d", &idx, &rc) ==
                    2 &&
                idx < n) {
                if (!acc.empty() && acc.back() == '\n') acc.pop_back();  // the marker's own newline
                seg[idx] = std::move(acc);
                acc.clear();
                if (rcs) (*rcs)[idx] = rc;
                cur = idx + 1;
            }
            continue;
        }
        acc.append(line).push_back('\n');
    }
    if (cur < n) seg[cur] = std::move(acc);
    return seg;
}

void run_batch(const config::Step& s, StageContext& ctx, ModuleResult& r,
               const std::vector<std::string>& env) {
    std::array<uint8_t, 8> nonce{};
    (void)fill_random(nonce);
    const std::string mark = "__ballast_rc_" + to_hex(nonce);
    std::string script = "ballast_rc() { printf '\\n%s %s %s\\n' '" + mark +
                         "' \"$1\" \"$2\"; printf '\\n%s %s %s\\n' '" + mark +
                         "' \"$1\" \"$2\" >&2; }\n";
    for (size_t i = 0; i < s.commands.size(); ++i)
        script += "(\n" + s.commands[i].text + "\n); ballast_rc " + std::to_string(i) + " $?\n";
    const size_t n = s.commands.size();
    // Stream lines as they come, without the markers.
    StageContext streaming = ctx;
    if (ctx.on_output)
        streaming.on_output = [&ctx, &mark](std::string_view id, std::string_view line,
                                            bool is_err) {
            if (line.rfind(mark, 0) != 0 && !line.empty()) ctx.on_output(id, line, is_err);
        };
    auto res = run_shell(streaming, script, {env, std::chrono::seconds(0), s.id});
    if (!res) {
        r.error(res.error().what());
        return;
    }
    std::vector<int> rcs(n, -1);
    auto outs = split_segments(res->out, mark, n, &rcs);
    auto errs = split_segments(res->err, mark, n, nullptr);
    size_t ok = 0;
    for (size_t i = 0; i < n; ++i) {
        if (rcs[i] == 0) {
            ++ok;
        } else if (rcs[i] < 0) {
            report(r, s.commands[i].text, "did not run (the shell " + res->describe() + ")",
                   outs[i], errs[i]);
        } else {
            report(r, s.commands[i].text, fmt::format("exited with status {}", rcs[i]), outs[i],
                   errs[i]);
        }
    }
    r.note(fmt::format("{} of {} commands ran successfully", ok, n));
}

}  // namespace

void commands(const config::Step& s, StageContext& ctx, ModuleResult& r) {
    if (s.commands.empty()) return;
    std::vector<std::string> env;
    for (const auto& [k, v] : s.command_env)
        env.push_back(k + "=" + v);
    if (s.commands.size() > 1 && s.command_timeout.count() == 0) {
        run_batch(s, ctx, r, env);
        return;
    }
    size_t ok = 0;
    for (const auto& c : s.commands) {
        auto res = c.argv.empty() ? run_shell(ctx, c.text, {env, s.command_timeout, s.id})
                                  : run_argv(ctx, c.argv, {env, s.command_timeout, s.id});
        if (!res) {
            r.error(fmt::format("'{}': {}", c.text, res.error().what()));
            continue;
        }
        if (!res->success()) {
            report(r, c.text, res->describe(), res->out, res->err);
            continue;
        }
        ++ok;
    }
    r.note(fmt::format("{} of {} command{} ran successfully", ok, s.commands.size(),
                       s.commands.size() == 1 ? "" : "s"));
}

}  // namespace ballast::stages::modules
