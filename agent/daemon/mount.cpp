// ballast-agent mount: the initramfs assembles the immutable root (dracut module 90ballast,
// ballast-mount.service). Whatever goes wrong, the boot goes on: each failure is on the console
// and in RUN/mount.json, and the exit code says whether everything worked.
#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include <spdlog/spdlog.h>

#include "ballast/core/atomic_file.hpp"
#include "ballast/core/fd.hpp"
#include "ballast/core/json.hpp"
#include "ballast/mount/assemble.hpp"
#include "ballast/stages/format.hpp"
#include "ballast/stages/runner.hpp"
#include "oneshot.hpp"

namespace ballast::agent {
namespace {

namespace fs = std::filesystem;
constexpr std::string_view kMapperName = "ballast-persistent";

// udev creates the by-partlabel links a moment after the root's own device appears.
bool wait_for(const std::string& path, std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    std::error_code ec;
    while (!fs::exists(path, ec)) {
        if (std::chrono::steady_clock::now() >= until) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return true;
}

// LUKS1 and LUKS2 share the magic at offset 0.
bool is_luks(const std::string& device) {
    UniqueFd fd(::open(device.c_str(), O_RDONLY | O_CLOEXEC));
    char magic[6] = {};
    return fd && ::pread(fd.get(), magic, sizeof magic, 0) == sizeof magic &&
           std::memcmp(magic, "LUKS\xba\xbe", 6) == 0;
}

// A stage in the initramfs. `root` is what it acts on; its config always comes from the slot.
bool run_stage(const char* stage, const RootPrefix& root, const RootPrefix& sysroot,
               const config::AgentSettings& settings) {
    stages::RunRequest r;
    r.stage = stage;
    r.root = root;
    r.config_root = sysroot;
    stages::apply_settings(r, settings);
    auto rep = stages::run(r);
    if (!rep) {
        spdlog::error("stage {}: {}", stage, rep.error().what());
        return false;
    }
    if (!rep->result.steps.empty())
        std::fputs(stages::format_report(rep->to_json(), false).c_str(), stderr);
    return rep->ok();
}

// /dev, /proc, /sys and /run of the initramfs, bound into the new root for as long as this
// lives (the chrooted stage); detached on the way out.
class ApiMounts {
  public:
    explicit ApiMounts(const fs::path& root) {
        for (const char* d : {"dev", "proc", "sys", "run"}) {
            const auto at = root / d;
            // Slave copies: the initramfs's / is shared, and detaching a shared copy would
            // propagate and unmount the originals too (/run/ballast/persistent, /dev/pts, ...).
            // (Left bound, not detached, if it cannot be made a slave.)
            if (::mount((std::string("/") + d).c_str(), at.c_str(), nullptr, MS_BIND | MS_REC,
                        nullptr) == 0) {
                if (::mount(nullptr, at.c_str(), nullptr, MS_SLAVE | MS_REC, nullptr) == 0)
                    done_.push_back(at);
                else
                    spdlog::warn("mount: make {} a slave: {}", at.string(), std::strerror(errno));
            } else
                spdlog::warn("mount: bind /{} into {} for the initramfs stage: {}", d,
                             root.string(), std::strerror(errno));
        }
    }
    ~ApiMounts() {
        for (auto it = done_.rbegin(); it != done_.rend(); ++it)
            if (::umount2(it->c_str(), MNT_DETACH) != 0)
                spdlog::warn("mount: detach {}: {}", it->string(), std::strerror(errno));
    }
    ApiMounts(const ApiMounts&) = delete;
    ApiMounts& operator=(const ApiMounts&) = delete;

  private:
    std::vector<fs::path> done_;
};

}  // namespace

int run_mount_mode(const NodeOptions& node, const MountRequest& req, bool json) {
    const RootPrefix sysroot(fs::absolute(req.sysroot));
    const auto settings_path =
        node.settings_explicit ? node.settings_path : sysroot(config::kDefaultAgentSettingsPath);
    nlohmann::json extra = nlohmann::json::object();
    auto settings = config::load_agent_settings(settings_path, node.settings_explicit);
    if (!settings && !req.dry_run) {
        // A bad agent.yaml must not leave the node with a read-only /etc and /var: the boot
        // goes on with the defaults and says why.
        spdlog::error("mount: {}; assembling the default layout", settings.error().what());
        std::fprintf(stderr, "ballast: mount: %s\nballast: mount: using the default layout\n",
                     settings.error().what().c_str());
        extra["config_error"] = settings.error().what();
        settings = config::AgentSettings{};
    }
    if (!settings) return report_failure("mount", settings.error(), json);

    mount::Layout layout;
    layout.sysroot = sysroot.base();
    layout.run_dir = fs::absolute(req.run_dir);
    layout.persistent_device = req.device.empty() ? settings->mount.device : req.device;
    layout.oem_device = settings->mount.oem_device;
    layout.etc = settings->mount.etc;
    layout.persistent_paths = settings->mount.persistent_paths;
    auto steps = mount::plan(layout);
    if (!steps) return report_failure("mount", steps.error(), json);
    if (req.dry_run) {
        if (json) {
            nlohmann::json j = nlohmann::json::array();
            for (const auto& s : *steps)
                j.push_back(s.to_json());
            std::printf("%s\n", json_text(nlohmann::json{{"ok", true}, {"plan", j}}, 2).c_str());
        } else {
            for (const auto& s : *steps)
                std::printf("%s\n", s.describe().c_str());
        }
        return 0;
    }

    std::string& device = layout.persistent_device;
    std::string blocked;
    if (!wait_for(device, settings->mount.device_timeout)) {
        blocked = fmt::format("{} did not appear within {} s", device,
                              settings->mount.device_timeout.count() / 1000);
    } else if (is_luks(device)) {
        UnlockRequest u{.device = device, .name = std::string(kMapperName), .tpm2_device = {}};
        if (auto method = unlock_device(*settings, u)) {
            extra["unlocked"] = *method;
            device = "/dev/mapper/" + u.name;
        } else {
            blocked = "still locked: " + method.error().what();
            extra["unlock_error"] = method.error().what();
        }
    }
    // OEM is optional, but a link udev makes a moment late must not cost the node its config.
    if (!layout.oem_device.empty())
        (void)wait_for(layout.oem_device,
                       std::min<std::chrono::milliseconds>(settings->mount.device_timeout,
                                                           std::chrono::seconds(5)));
    steps = mount::plan(layout);
    if (!steps) return report_failure("mount", steps.error(), json);
    steps->front().blocked = blocked;
    mount::Report rep;
    if (auto st = mount::assemble(*steps, mount::Step::Phase::storage, rep); !st)
        return report_failure("mount", st.error(), json);
    // rootfs: on the initramfs, not chrooted, with the slot's config (and /oem, mounted now).
    bool stages_ok = !req.stages || run_stage("rootfs", node.root, sysroot, *settings);
    if (auto st = mount::assemble(*steps, mount::Step::Phase::root, rep); !st)
        return report_failure("mount", st.error(), json);
    // initramfs: chrooted into the assembled root, which needs the kernel's and the
    // initramfs's /dev, /proc, /sys and /run there while it runs (commands use /dev/null).
    if (req.stages) {
        ApiMounts api(sysroot.base());
        stages_ok = run_stage("initramfs", sysroot, sysroot, *settings) && stages_ok;
    }

    auto out = rep.to_json();
    out.update(extra);
    out["stages_ok"] = stages_ok;
    const bool ok =
        rep.ok() && stages_ok && !extra.contains("unlock_error") && !extra.contains("config_error");
    out["ok"] = ok;
    if (auto st = write_file_atomic(layout.run_dir / "mount.json", json_text(out, 2) + "\n"); !st)
        spdlog::warn("mount: record the report: {}", st.error().what());
    if (json) {
        std::printf("%s\n", json_text(out).c_str());
    } else {
        for (const auto& e : rep.errors())
            std::fprintf(stderr, "ballast: mount: %s\n", e.c_str());
        std::printf("mount: %s%s\n", ok ? "root assembled" : "root assembled with errors",
                    rep.persistent ? "" : " (persistent storage NOT mounted: state is in RAM)");
    }
    return ok ? 0 : kExitFailure;
}

}  // namespace ballast::agent
