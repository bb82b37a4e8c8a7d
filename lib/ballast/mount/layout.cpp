#include "ballast/mount/layout.hpp"
#include "ballast/core/text.hpp"

#include <algorithm>
#include <array>

#include <sys/mount.h>

#include <fmt/format.h>

namespace ballast::mount {

namespace {

// `path` is `dir` or below it, component-wise ("/var/lib" is below "/var", "/variant" is not).
bool within(std::string_view path, std::string_view dir) {
    if (dir == "/") return true;
    return path == dir || (path.starts_with(dir) && path[dir.size()] == '/');
}

constexpr std::string_view kStateDir = ".ballast/state";
constexpr std::string_view kSeedDir = ".ballast/seeding";
// Pinned so that the persistent upper layer never depends on kernel defaults or the command
// line (overlay.index=Y would refuse the upper after an upgrade changes the lower layer).
constexpr std::string_view kOverlayPins = "index=off,redirect_dir=off,metacopy=off";

}  // namespace

std::string_view name(EtcMode m) noexcept {
    return m == EtcMode::persistent ? "persistent" : "tmpfs";
}

const std::vector<std::string>& default_persistent_paths() {
    static const std::vector<std::string> paths = {
        "/home",
        "/opt",
        "/root",
        "/usr/local",
        "/var/log",
        "/var/lib/ballast",
        "/var/lib/systemd",
        "/var/lib/rancher",
        "/var/lib/kubelet",
        "/var/lib/containerd",
        "/var/lib/cni",
        "/var/lib/etcd",
        "/var/lib/longhorn",
        "/var/lib/calico",
    };
    return paths;
}

Status check_persistent_path(std::string_view path) {
    if (!is_absolute_path(path))
        return fail(Errc::invalid_argument, "'{}': expected an absolute path", path);
    if (path == "/") return fail(Errc::invalid_argument, "'/': the root is the read-only slot");
    if (path.back() == '/') return fail(Errc::invalid_argument, "'{}': no trailing '/'", path);
    for (size_t i = 1; i <= path.size();) {
        size_t j = path.find('/', i);
        if (j == std::string_view::npos) j = path.size();
        const auto comp = path.substr(i, j - i);
        if (comp.empty() || comp == "." || comp == "..")
            return fail(Errc::invalid_argument, "'{}': write it without '//', '.' or '..'", path);
        i = j + 1;
    }
    if (path.find_first_of(",:\n") != std::string_view::npos)
        return fail(Errc::invalid_argument, "'{}': ',', ':' and newlines are not allowed", path);
    for (std::string_view own : {"/etc", "/var", "/tmp", "/oem"})
        if (path == own)
            return fail(Errc::invalid_argument,
                        "'{}': the layout mounts it already (list folders below it instead)", path);
    for (std::string_view kernel : {"/proc", "/sys", "/dev", "/run", "/boot", "/tmp", "/oem"})
        if (within(path, kernel))
            return fail(Errc::invalid_argument, "'{}': {} cannot hold persistent paths", path,
                        kernel);
    if (within(path, "/usr") && !within(path, "/usr/local"))
        return fail(Errc::invalid_argument,
                    "'{}': /usr belongs to the slot image (only /usr/local can persist)", path);
    return {};
}

std::vector<std::string> check_persistent_paths(const std::vector<std::string>& paths) {
    std::vector<std::string> problems;
    for (size_t i = 0; i < paths.size(); ++i) {
        if (auto st = check_persistent_path(paths[i]); !st) {
            problems.push_back(fmt::format("[{}] {}", i, st.error().message()));
            continue;
        }
        for (size_t k = 0; k < i; ++k) {
            if (paths[k] == paths[i]) {
                problems.push_back(
                    fmt::format("[{}] '{}': listed twice (also [{}])", i, paths[i], k));
            } else if (within(paths[i], paths[k]) || within(paths[k], paths[i])) {
                const auto& inner = paths[i].size() > paths[k].size() ? paths[i] : paths[k];
                const auto& outer = paths[i].size() > paths[k].size() ? paths[k] : paths[i];
                problems.push_back(fmt::format(
                    "[{}] '{}' is inside '{}' ([{}]): both would keep it in one place; list only "
                    "'{}'",
                    i, inner, outer, k, outer));
            }
        }
    }
    return problems;
}

std::string Step::describe() const {
    switch (kind) {
        case Kind::device:
            return fmt::format("{:<22} {} {} ({}{})", node_path, fstype, source,
                               read_only ? "read-only" : "read-write",
                               optional ? ", if present" : "");
        case Kind::tmpfs:
            return fmt::format("{:<22} tmpfs ({}{})", node_path, options,
                               flags & MS_NOSUID ? ",nosuid,nodev" : "");
        case Kind::overlay:
            return fmt::format("{:<22} overlay, upper {}", node_path, upper.string());
        case Kind::bind:
            return fmt::format("{:<22} bind of {}", node_path, source);
    }
    return node_path;
}

nlohmann::json Step::to_json() const {
    static constexpr std::array kinds = {"device", "tmpfs", "overlay", "bind"};
    nlohmann::json j = {{"path", node_path},
                        {"kind", kinds[size_t(kind)]},
                        {"target", target.string()},
                        {"source", source}};
    if (!fstype.empty()) j["fstype"] = fstype;
    if (!options.empty()) j["options"] = options;
    if (read_only) j["read_only"] = true;
    if (!upper.empty()) j["upper"] = upper.string();
    return j;
}

Result<std::vector<Step>> plan(const Layout& l) {
    for (const auto* p : {&l.sysroot, &l.run_dir})
        if (!p->is_absolute() || p->string().find_first_of(",:") != std::string::npos)
            return fail(Errc::invalid_argument,
                        "'{}': expected an absolute path without ',' or ':'", p->string());
    if (auto problems = check_persistent_paths(l.persistent_paths); !problems.empty())
        return fail(Errc::invalid_argument, "persistent_paths: {}", fmt::join(problems, "; "));
    if (l.persistent_device.empty()) return fail(Errc::invalid_argument, "no persistent device");

    const auto persistent = l.run_dir / "persistent";
    const auto ephemeral = l.run_dir / "ephemeral";
    auto in_root = [&](std::string_view node_path) {
        return l.sysroot / std::filesystem::path(node_path).relative_path();
    };
    std::vector<Step> steps;
    auto add = [&](Step s) -> Step& { return steps.emplace_back(std::move(s)); };

    constexpr auto storage = Step::Phase::storage;
    add({.kind = Step::Kind::device,
         .phase = storage,
         .node_path = persistent.string(),
         .target = persistent,
         .source = l.persistent_device,
         .fstype = "ext4",
         .create_target = true});
    add({.kind = Step::Kind::tmpfs,
         .phase = storage,
         .node_path = ephemeral.string(),
         .target = ephemeral,
         .source = "tmpfs",
         .fstype = "tmpfs",
         .options = "mode=0755",
         .create_target = true});
    if (!l.oem_device.empty())
        add({.kind = Step::Kind::device,
             .phase = storage,
             .node_path = "/oem",
             .target = in_root("/oem"),
             .source = l.oem_device,
             .fstype = "ext4",
             .read_only = true,
             .optional = true});

    auto overlay = [&](std::string_view node_path, const std::filesystem::path& base) {
        Step s{.kind = Step::Kind::overlay,
               .node_path = std::string(node_path),
               .target = in_root(node_path),
               .source = "overlay",
               .fstype = "overlay"};
        s.upper = base / "upper";
        s.work = base / "work";
        s.options = fmt::format("lowerdir={},upperdir={},workdir={},{}", s.target.string(),
                                s.upper.string(), s.work.string(), kOverlayPins);
        s.root = l.sysroot;
        add(std::move(s));
    };
    overlay("/etc", (l.etc == EtcMode::persistent ? persistent / ".ballast" : ephemeral) / "etc");
    overlay("/var", ephemeral / "var");
    add({.kind = Step::Kind::tmpfs,
         .node_path = "/tmp",
         .target = in_root("/tmp"),
         .source = "tmpfs",
         .fstype = "tmpfs",
         .options = "mode=1777",
         .flags = MS_NOSUID | MS_NODEV,
         .root = l.sysroot});

    // In name order, after the overlays: a bind under /var lands on the overlay.
    auto paths = l.persistent_paths;
    std::sort(paths.begin(), paths.end());
    for (const auto& p : paths) {
        const auto rel = std::filesystem::path(p).relative_path();
        add({.kind = Step::Kind::bind,
             .node_path = p,
             .target = in_root(p),
             .source = (persistent / kStateDir / rel).string(),
             .seed_from = in_root(p),
             .seed_tmp = persistent / kSeedDir / rel,
             .create_target = within(p, "/var") || within(p, "/etc"),
             .root = l.sysroot});
    }
    return steps;
}

}  // namespace ballast::mount
