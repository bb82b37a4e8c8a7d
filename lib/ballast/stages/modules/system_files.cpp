// Modules that render one system file each: dns (resolv.conf), hostname (/etc/hostname,
// /etc/hosts, the live hostname), sysctl (/etc/sysctl.d and /proc/sys), timesyncd (a drop-in),
// environment (/etc/environment).
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <map>
#include <sstream>

#include "ballast/core/atomic_file.hpp"
#include "ballast/core/files.hpp"
#include "ballast/stages/modules.hpp"

namespace ballast::stages::modules {
namespace {

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    std::string l;
    while (std::getline(in, l))
        out.push_back(l);
    return out;
}

std::string join_words(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& w : v)
        s += (s.empty() ? "" : " ") + w;
    return s;
}

void record(ModuleResult& r, const Result<bool>& changed, const std::string& what) {
    if (!changed)
        r.error(changed.error().what());
    else if (*changed)
        r.change(what);
}

std::string trim(const std::string& s) {
    auto b = s.find_first_not_of(" \t\r\n");
    auto e = s.find_last_not_of(" \t\r\n");
    return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

// KEY=VALUE files (/etc/environment, sysctl.d, ini sections): update keys in place, append new
// ones, keep everything else.
std::string merge_assignments(
    const std::string& existing, const std::map<std::string, std::string>& values,
    const std::function<std::string(const std::string&, const std::string&)>& render,
    const std::function<std::string(const std::string&)>& key_of) {
    auto lines = lines_of(existing);
    std::map<std::string, bool> done;
    for (auto& l : lines) {
        std::string k = key_of(l);
        auto it = values.find(k);
        if (k.empty() || it == values.end()) continue;
        l = render(k, it->second);
        done[k] = true;
    }
    for (const auto& [k, v] : values)
        if (!done.count(k)) lines.push_back(render(k, v));
    std::string out;
    for (const auto& l : lines)
        out += l + "\n";
    return out;
}

std::string assignment_key(const std::string& line) {
    std::string t = trim(line);
    if (t.empty() || t[0] == '#' || t[0] == ';') return "";
    if (t.rfind("export ", 0) == 0) t = trim(t.substr(7));
    auto eq = t.find('=');
    return eq == std::string::npos ? "" : trim(t.substr(0, eq));
}

}  // namespace

void dns(const config::Step& s, StageContext& ctx, ModuleResult& r) {
    if (s.dns.nameservers.empty()) return;
    std::string content = "# Written by Ballast (dns step " + s.id + ")\n";
    if (!s.dns.search.empty() && join_words(s.dns.search) != ".")
        content += "search " + join_words(s.dns.search) + "\n";
    for (const auto& ns : s.dns.nameservers)
        content += "nameserver " + ns + "\n";
    if (!s.dns.options.empty()) content += "options " + join_words(s.dns.options) + "\n";
    record(r, ensure_file(ctx.root, s.dns.path, content, 0644), "wrote " + s.dns.path);
}

void hostname(const config::Step& s, StageContext& ctx, ModuleResult& r) {
    if (s.hostname.empty()) return;
    const std::string& name = s.hostname;
    if (name.size() > 64 || name.find_first_of(" \t\n/") != std::string::npos ||
        name.front() == '-') {
        r.error(fmt::format("'{}' is not a valid hostname", name));
        return;
    }
    record(r, ensure_file(ctx.root, "/etc/hostname", name + "\n", 0644), "wrote /etc/hostname");
    // /etc/hosts: the Debian convention, "127.0.1.1 <name>"; other lines stay.
    auto hosts = read_beneath(ctx.root, "/etc/hosts");
    if (!hosts) {
        r.error(hosts.error().what());
    } else {
        auto lines = lines_of(hosts->value_or("127.0.0.1\tlocalhost\n"));
        bool found = false;
        for (auto& l : lines)
            if (l.rfind("127.0.1.1", 0) == 0) {
                l = "127.0.1.1\t" + name;
                found = true;
            }
        if (!found) lines.push_back("127.0.1.1\t" + name);
        std::string out;
        for (const auto& l : lines)
            out += l + "\n";
        mode_t mode = 0644;
        if (auto st = stat_beneath(ctx.root, "/etc/hosts"); st && *st)
            mode = (*st)->st_mode & 07777;
        record(r, ensure_file(ctx.root, "/etc/hosts", out, mode), "updated /etc/hosts");
    }
    if (ctx.live) {
        char cur[256] = {};
        ::gethostname(cur, sizeof cur - 1);
        if (name != cur) {
            if (::sethostname(name.c_str(), name.size()) < 0)
                r.error(fail_errno(errno, "sethostname").error().what());
            else
                r.change("set the running hostname to " + name);
        }
        ctx.facts["Hostname"] = name;
    }
}

void sysctl(const config::Step& s, StageContext& ctx, ModuleResult& r) {
    if (s.sysctl.empty()) return;
    for (const auto& [k, v] : s.sysctl)
        if (k.empty() || k.find("..") != std::string::npos ||
            k.find_first_of(" =\t\n") != std::string::npos || k.front() == '.' ||
            k.front() == '/') {
            r.error(fmt::format("'{}' is not a sysctl name", k));
            return;
        }
    // Persist: one file for everything Ballast sets, merged key by key.
    const std::string path = "/etc/sysctl.d/90-ballast.conf";
    auto cur = read_beneath(ctx.root, path);
    if (!cur) {
        r.error(cur.error().what());
        return;
    }
    std::string content = merge_assignments(
        cur->value_or("# Written by Ballast: sysctl settings from cloud-config.\n"), s.sysctl,
        [](const std::string& k, const std::string& v) { return k + " = " + v; }, assignment_key);
    record(r, ensure_file(ctx.root, path, content, 0644), "wrote " + path);
    if (!ctx.live) return;
    for (const auto& [k, v] : s.sysctl) {
        std::string proc = "/proc/sys/";
        for (char c : k)
            proc += c == '.' ? '/' : c;
        auto now = read_file(proc, 1 << 16);
        auto norm = [](std::string x) {
            std::string o;
            bool sp = false;
            for (char c : trim(x)) {
                if (c == ' ' || c == '\t')
                    sp = true;
                else {
                    if (sp && !o.empty()) o += ' ';
                    o += c;
                    sp = false;
                }
            }
            return o;
        };
        if (now && norm(*now) == norm(v)) continue;
        // /proc files take a plain write; the atomic rename used elsewhere does not apply.
        FILE* f = std::fopen(proc.c_str(), "w");
        if (!f || std::fputs(v.c_str(), f) < 0 || std::fclose(f) != 0) {
            int e = errno;
            if (f) std::fclose(f);
            r.error(fail_errno(e, "sysctl " + k).error().what());
            continue;
        }
        r.change(fmt::format("set {} = {}", k, v));
    }
}

void timesyncd(const config::Step& s, StageContext& ctx, ModuleResult& r) {
    if (s.timesyncd.empty()) return;
    const std::string path = "/etc/systemd/timesyncd.conf.d/10-ballast.conf";
    auto cur = read_beneath(ctx.root, path);
    if (!cur) {
        r.error(cur.error().what());
        return;
    }
    std::string content = merge_assignments(
        cur->value_or("# Written by Ballast.\n[Time]\n"), s.timesyncd,
        [](const std::string& k, const std::string& v) { return k + "=" + v; }, assignment_key);
    record(r, ensure_file(ctx.root, path, content, 0644), "wrote " + path);
}

void environment(const config::Step& s, StageContext& ctx, ModuleResult& r) {
    if (s.environment.empty()) return;
    auto cur = read_beneath(ctx.root, s.environment_file);
    if (!cur) {
        r.error(cur.error().what());
        return;
    }
    auto quote = [](const std::string& v) {
        std::string q = "\"";
        for (char c : v) {
            if (c == '"' || c == '\\' || c == '$' || c == '`') q += '\\';
            q += c;
        }
        return q + "\"";
    };
    std::string content = merge_assignments(
        cur->value_or(""), s.environment,
        [&](const std::string& k, const std::string& v) { return k + "=" + quote(v); },
        assignment_key);
    record(r, ensure_file(ctx.root, s.environment_file, content, 0644),
           "wrote " + s.environment_file);
}

}  // namespace ballast::stages::modules
