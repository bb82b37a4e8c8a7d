#include "ballast/config/sources.hpp"

#include <algorithm>
#include <system_error>

#include "ballast/core/atomic_file.hpp"
#include "ballast/core/cmdline.hpp"

namespace ballast::config {
namespace {

constexpr size_t kMaxConfigSize = 4u << 20;

bool has_yaml_ext(const std::filesystem::path& p) {
    auto e = p.extension();
    return e == ".yaml" || e == ".yml";
}

bool is_k3os_path(std::string_view p) {
    return p.rfind("/k3os/", 0) == 0 || p.rfind("/var/lib/rancher/k3os/", 0) == 0;
}

std::string trim(std::string_view s) {
    auto b = s.find_first_not_of(" \t\r");
    auto e = s.find_last_not_of(" \t\r");
    return b == std::string_view::npos ? "" : std::string(s.substr(b, e - b + 1));
}

// Files of a folder, recursively, in name order (yip walks the same way).
std::vector<std::filesystem::path> yaml_files(const std::filesystem::path& dir) {
    std::vector<std::filesystem::path> out;
    std::error_code ec;
    for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
        if (it->is_regular_file(ec) && has_yaml_ext(it->path())) out.push_back(it->path());
    }
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace

const std::vector<std::string_view>& node_source_paths() {
    static const std::vector<std::string_view> paths = {
        "/usr/lib/ballast/config.d",          // image defaults
        "/k3os/system/config.yaml",           // k3OS: system config
        "/oem",                               // OEM partition (BALLAST_OEM)
        "/var/lib/rancher/k3os/config.yaml",  // k3OS: user config
        "/var/lib/rancher/k3os/config.d",
        "/usr/local/cloud-config",
        "/etc/ballast/config.d",
        "/run/ballast/config.d",  // datasources, config_url
    };
    return paths;
}

SourceKind detect_kind(std::string_view text, std::string_view path) {
    size_t i = 0;
    for (int line = 0; line < 10 && i < text.size(); ++line) {
        size_t j = text.find('\n', i);
        if (j == std::string_view::npos) j = text.size();
        std::string l = trim(text.substr(i, j - i));
        i = j + 1;
        if (l == "#cloud-config" || l == "#kairos-config" || l == "#node-config")
            return SourceKind::cloud_config;
        if (l.empty() || l.front() == '#') continue;
        break;
    }
    if (is_k3os_path(path)) return SourceKind::k3os;
    // A top-level `k3os:` key (at the start of a line, not indented).
    size_t at = 0;
    while ((at = text.find("k3os:", at)) != std::string_view::npos) {
        if (at == 0 || text[at - 1] == '\n') return SourceKind::k3os;
        at += 5;
    }
    return SourceKind::no_header;
}

std::vector<std::string> cmdline_config(std::string_view cmdline) {
    // Words owned by the agent itself, not cloud-config.
    static const std::vector<std::string_view> agent_keys = {"slot", "root", "debug"};
    std::vector<std::string> docs;
    for (const auto& w : parse_cmdline(cmdline)) {
        if (w.key.rfind("ballast.", 0) != 0) continue;
        std::string key = w.key.substr(8);
        if (key.empty() || std::find(agent_keys.begin(), agent_keys.end(), key) != agent_keys.end())
            continue;
        // a.b.c=v -> "a:\n  b:\n    c: 'v'\n"
        std::string yaml, indent;
        size_t i = 0;
        for (;;) {
            size_t j = key.find('.', i);
            std::string part = key.substr(i, j == std::string::npos ? std::string::npos : j - i);
            if (j == std::string::npos) {
                std::string v = w.value.value_or("true");
                std::string quoted;
                for (char c : v)
                    quoted += c == '\'' ? std::string("''") : std::string(1, c);
                yaml += indent + part + ": '" + quoted + "'\n";
                break;
            }
            yaml += indent + part + ":\n";
            indent += "  ";
            i = j + 1;
        }
        docs.push_back(std::move(yaml));
    }
    return docs;
}

Result<std::vector<SourceFile>> collect_sources(const RootPrefix& root, const SourceOptions& opts,
                                                Diagnostics& diags) {
    std::vector<SourceFile> out;
    auto add = [&](const std::string& name, const std::filesystem::path& host,
                   bool named) -> Status {
        auto text = read_file(host, kMaxConfigSize);
        if (!text) {
            if (!named) {
                diags.warning({name, 0, 0}, "cannot read: " + text.error().message());
                return {};
            }
            return std::unexpected(std::move(text.error()).context("config"));
        }
        SourceKind kind = detect_kind(*text, name);
        if (kind == SourceKind::no_header) {
            diags.warning(
                {name, 1, 1},
                "no #cloud-config header: file ignored (add '#cloud-config' as its first line)");
        }
        out.push_back({name, std::move(*text), kind});
        return {};
    };
    if (opts.node_sources) {
        for (auto node_path : node_source_paths()) {
            auto host = BALLAST_TRY(root.resolve(node_path));
            std::error_code ec;
            if (std::filesystem::is_directory(host, ec)) {
                for (const auto& f : yaml_files(host)) {
                    std::string name =
                        std::string(node_path) + f.string().substr(host.string().size());
                    BALLAST_TRY(add(name, f, false));
                }
            } else if (std::filesystem::is_regular_file(host, ec)) {
                BALLAST_TRY(add(std::string(node_path), host, false));
            }
        }
    }
    // Each word is its own document, merged like a file of its own; the header is implied.
    for (auto& doc : cmdline_config(opts.cmdline))
        out.push_back({"kernel command line", std::move(doc), SourceKind::cloud_config});
    for (const auto& f : opts.extra_files)
        BALLAST_TRY(add(f, f, true));
    return out;
}

}  // namespace ballast::config
