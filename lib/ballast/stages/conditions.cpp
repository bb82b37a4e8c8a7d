#include "ballast/stages/conditions.hpp"

#include <algorithm>
#include <regex>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "ballast/core/files.hpp"
#include "ballast/core/json.hpp"

namespace ballast::stages {
namespace {

std::string fact(const StageContext& ctx, const char* a, const char* b) {
    const auto& v = ctx.facts;
    if (!v.contains("Values") || !v["Values"].contains(a) || !v["Values"][a].contains(b)) return "";
    const auto& x = v["Values"][a][b];
    return x.is_string() ? x.get<std::string>() : json_text(x);
}

// Go-regexp-like search (unanchored). An invalid pattern skips the step with the reason.
std::optional<std::string> regex_mismatch(const std::string& pattern, const std::string& value,
                                          const char* what) {
    try {
        if (std::regex_search(value, std::regex(pattern))) return std::nullopt;
        return fmt::format("{} '{}' does not match /{}/", what, value, pattern);
    } catch (const std::regex_error&) {
        return fmt::format("invalid {} pattern /{}/", what, pattern);
    }
}

bool exists(const StageContext& ctx, const std::string& path) {
    auto st = stat_beneath(ctx.root, path);
    return st && st->has_value();
}

std::string service_manager(const StageContext& ctx) {
    auto any = [&](std::initializer_list<const char*> paths) {
        return std::ranges::any_of(paths, [&](const char* p) { return exists(ctx, p); });
    };
    const bool systemd = any({"/usr/bin/systemctl", "/bin/systemctl", "/usr/sbin/systemctl"});
    const bool openrc = any({"/sbin/openrc", "/usr/sbin/openrc", "/usr/bin/openrc"});
    return systemd && !openrc ? "systemd" : openrc && !systemd ? "openrc" : "unknown";
}

std::optional<std::string> check_if_files(const config::Step& s, StageContext& ctx) {
    for (const auto& f : s.if_files.all)
        if (!exists(ctx, f)) return "if_files.all: " + f + " does not exist";
    if (!s.if_files.any.empty() &&
        std::ranges::none_of(s.if_files.any, [&](const std::string& f) { return exists(ctx, f); }))
        return "if_files.any: none of the files exists";
    for (const auto& f : s.if_files.none)
        if (exists(ctx, f)) return "if_files.none: " + f + " exists";
    return std::nullopt;
}

std::string describe_if_files(const config::Step& s) {
    std::vector<std::string> parts;
    if (!s.if_files.all.empty()) parts.push_back(fmt::format("all of {}", s.if_files.all));
    if (!s.if_files.any.empty()) parts.push_back(fmt::format("any of {}", s.if_files.any));
    if (!s.if_files.none.empty()) parts.push_back(fmt::format("none of {}", s.if_files.none));
    return fmt::format("only if files exist: {}", fmt::join(parts, "; "));
}

const Condition kConditions[] = {
    {"node", [](const config::Step& s) { return !s.node.empty(); },
     [](const config::Step& s) { return "only on hosts matching /" + s.node + "/"; },
     [](const config::Step& s, StageContext& ctx) {
         return regex_mismatch(s.node, ctx.facts.value("Hostname", ""), "hostname");
     }},
    {"if", [](const config::Step& s) { return !s.if_cmd.empty(); },
     [](const config::Step& s) { return "only if: " + s.if_cmd; },
     [](const config::Step& s, StageContext& ctx) -> std::optional<std::string> {
         auto r = run_shell(ctx, s.if_cmd, {{}, std::chrono::seconds(60), s.id});
         if (!r) return "if: " + r.error().what();
         if (!r->success()) return fmt::format("if: '{}' {}", s.if_cmd, r->describe());
         return std::nullopt;
     }},
    {"only_os", [](const config::Step& s) { return !s.only_os.empty(); },
     [](const config::Step& s) { return "only on OS /" + s.only_os + "/"; },
     [](const config::Step& s, StageContext& ctx) {
         return regex_mismatch(s.only_os, fact(ctx, "os", "name"), "OS");
     }},
    {"only_os_version", [](const config::Step& s) { return !s.only_os_version.empty(); },
     [](const config::Step& s) { return "only on OS version /" + s.only_os_version + "/"; },
     [](const config::Step& s, StageContext& ctx) {
         return regex_mismatch(s.only_os_version, fact(ctx, "os", "version"), "OS version");
     }},
    {"only_arch", [](const config::Step& s) { return !s.only_arch.empty(); },
     [](const config::Step& s) { return "only on arch /" + s.only_arch + "/"; },
     [](const config::Step& s, StageContext& ctx) {
         return regex_mismatch(s.only_arch, ctx.facts["Values"].value("arch", ""), "architecture");
     }},
    {"only_service_manager", [](const config::Step& s) { return !s.only_service_manager.empty(); },
     [](const config::Step& s) { return "only under " + s.only_service_manager; },
     [](const config::Step& s, StageContext& ctx) -> std::optional<std::string> {
         const std::string have = service_manager(ctx);
         if (have == s.only_service_manager) return std::nullopt;
         return fmt::format("service manager is {}, not {}", have, s.only_service_manager);
     }},
    {"if_files",
     [](const config::Step& s) {
         return !s.if_files.all.empty() || !s.if_files.any.empty() || !s.if_files.none.empty();
     },
     describe_if_files, check_if_files},
};

}  // namespace

std::span<const Condition> conditions() {
    return kConditions;
}

std::optional<std::string> skip_reason(const config::Step& s, StageContext& ctx) {
    for (const auto& c : kConditions)
        if (c.set(s))
            if (auto why = c.check(s, ctx)) return why;
    return std::nullopt;
}

}  // namespace ballast::stages
