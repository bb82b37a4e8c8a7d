#include "ballast/ops/mount.hpp"

#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>

#include <spdlog/spdlog.h>

#include "ballast/boot/disk_boot.hpp"
#include "ballast/core/atomic_file.hpp"
#include "ballast/core/cmdline.hpp"
#include "ballast/core/fd.hpp"
#include "ballast/core/json.hpp"
#include "ballast/core/text.hpp"
#include "ballast/disk/partition.hpp"
#include "ballast/install/reset.hpp"
#include "ballast/ops/escrow.hpp"
#include "ballast/ops/unlock.hpp"
#include "ballast/stages/format.hpp"
#include "ballast/stages/runner.hpp"

namespace ballast::ops {
namespace {

namespace fs = std::filesystem;

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

// A recovery key made at boot goes to the console only: the initramfs's stderr ends in the
// journal, which must never hold a secret.
void show_recovery_key(const std::string& key) {
    UniqueFd fd(::open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC));
    const auto text = fmt::format(
        "\nballast: the new recovery key of {} (shown once, write it down):\n\n    {}\n\n",
        disk::kPersistentLabel, key);
    if (!fd || ::write(fd.get(), text.data(), text.size()) != ssize_t(text.size()))
        spdlog::warn(
            "mount: the new recovery key could not be shown on the console; make another one "
            "with agentctl encrypt recovery-key");
}

class SystemMountIo final : public MountIo {
  public:
    SystemMountIo(const NodeOptions& node, const RootPrefix& sysroot,
                  const config::AgentSettings& settings)
        : node_(node), sysroot_(sysroot), settings_(settings) {}

    bool wait_for(const std::string& path, std::chrono::milliseconds timeout) override {
        const auto until = std::chrono::steady_clock::now() + timeout;
        std::error_code ec;
        while (!fs::exists(path, ec)) {
            if (std::chrono::steady_clock::now() >= until) return false;
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        return true;
    }
    bool recovery_asked() override {
        auto cmdline = read_proc_cmdline();
        return cmdline && std::ranges::any_of(parse_cmdline(*cmdline), [](const auto& w) {
                   return w.key == "ballast.recovery";
               });
    }
    Result<std::optional<FinishedReset>> finish_reset(const std::string& device) override {
        auto disk_dev = BALLAST_TRY(disk::parent_disk(device));
        if (!disk_dev) return std::nullopt;  // not on a partitioned disk: no boot state to ask
        auto db = boot::DiskBoot::open(*disk_dev);
        auto state = db ? db->control().load(false)
                        : Result<boot::BootState>(std::unexpected(std::move(db.error())));
        if (!state) {
            // GRUB boots on its own defaults then; nothing says a reset is pending.
            spdlog::warn("mount: the boot state of {}: {}", *disk_dev, state.error().what());
            return std::nullopt;
        }
        std::optional<bool> asked;
        if (auto cmdline = read_proc_cmdline()) {
            if (auto r = reset_from_cmdline(*cmdline))
                asked = *r;
            else
                spdlog::warn("mount: {} (ignored)", r.error().what());
        }
        if (!state->reset && !asked) return std::nullopt;
        std::fprintf(stderr, "ballast: %s the factory reset asked for on %s\n",
                     state->reset ? "finishing" : "doing", disk_dev->c_str());
        install::ResetOptions o;
        o.device = *disk_dev;
        o.reset_oem = asked.value_or(false);  // a pending request keeps its own
        o.tpm2_device = settings_.tpm.device;
        o.pcrs = settings_.tpm.pcrs;
        o.pcr_bank = settings_.tpm.pcr_bank;
        o.tmp_base = "/run";  // the initramfs's tmpfs
        o.say = [](const std::string& line) {
            std::fprintf(stderr, "ballast: reset: %s\n", line.c_str());
        };
        auto rep = BALLAST_TRY(install::reset(o));
        if (rep.encryption && !rep.encryption->recovery_key.empty())
            show_recovery_key(rep.encryption->recovery_key);
        if (rep.request.poweroff)
            std::fputs(
                "ballast: the machine powers off once this boot has run the after-reset stage "
                "(reset.poweroff)\n",
                stderr);
        return FinishedReset{std::string(trim(rep.text())), rep.request.poweroff,
                             rep.encryption ? rep.encryption->recovery_key : std::string()};
    }
    Result<std::optional<std::string>> probe(const std::string& device) override {
        return disk::probe_content(device);
    }
    Result<std::string> unlock(const std::string& device, const std::string& name) override {
        auto r = BALLAST_TRY(ops::unlock(settings_, {device, name, {}}));
        return r.method;
    }
    Status assemble(const std::vector<mount::Step>& steps, mount::Step::Phase phase,
                    mount::Report& report) override {
        return mount::assemble(steps, phase, report);
    }
    bool run_stage(const char* stage) override {
        // rootfs acts on the initramfs, initramfs on the assembled root, which needs the kernel's
        // and the initramfs's /dev, /proc, /sys and /run while it runs (commands use /dev/null).
        // The config always comes from the slot.
        const bool chrooted = std::strcmp(stage, "initramfs") == 0;
        std::optional<ApiMounts> api;
        if (chrooted) api.emplace(sysroot_.base());
        stages::RunRequest r;
        r.stage = stage;
        r.root = chrooted ? sysroot_ : node_.root;
        r.config_root = sysroot_;
        stages::apply_settings(r, settings_);
        auto rep = stages::run(r);
        if (!rep) {
            spdlog::error("stage {}: {}", stage, rep.error().what());
            return false;
        }
        if (!rep->result.steps.empty())
            std::fputs(stages::format_report(rep->to_json(), false).c_str(), stderr);
        return rep->ok();
    }

  private:
    const NodeOptions& node_;
    RootPrefix sysroot_;
    const config::AgentSettings& settings_;
};

}  // namespace

void mark_recovery(const fs::path& run_dir, const std::string& reason, bool asked) {
    std::fprintf(stderr,
                 "ballast: RECOVERY BOOT: %s\n"
                 "ballast: persistent is not mounted; this boot starts ballast-recovery.target "
                 "(console login, SSH with the OEM config's keys). From there: agentctl status, "
                 "agentctl reset --device DISK, agentctl encrypt, agentctl install --no-format\n",
                 reason.c_str());
    std::error_code ec;
    fs::create_directories(run_dir, ec);
    const nlohmann::json j = {{"reason", reason}, {"asked", asked}};
    if (auto st = write_file_atomic(run_dir / kRecoveryFile, json_text(j, 2) + "\n"); !st) {
        // Without the marker the node would start as itself on a root without its data.
        spdlog::critical("mount: mark the recovery boot: {}", st.error().what());
        std::fprintf(stderr, "ballast: the recovery boot could NOT be marked: %s\n",
                     st.error().what().c_str());
    }
}

std::optional<nlohmann::json> recovery_boot(const RootPrefix& root) {
    const auto path = root(fmt::format("/run/ballast/{}", kRecoveryFile));
    std::error_code ec;
    if (!fs::exists(path, ec)) return std::nullopt;
    auto text = read_file(path, 1u << 16);
    auto j = text ? nlohmann::json::parse(*text, nullptr, false) : nlohmann::json();
    // The marker alone makes it a recovery boot: a damaged file does not make it a normal one.
    if (!j.is_object() || !j.contains("reason") || !j["reason"].is_string())
        return nlohmann::json{{"reason", "unknown (" + path.string() + " does not parse)"},
                              {"asked", false}};
    return j;
}

Result<std::optional<bool>> reset_from_cmdline(std::string_view cmdline) {
    std::optional<bool> out;
    for (const auto& w : parse_cmdline(cmdline)) {
        if (w.key != "ballast.reset") continue;
        if (!w.value || w.value == "persistent")
            out = false;
        else if (w.value == "oem")
            out = true;
        else
            return fail(Errc::invalid_argument,
                        "kernel command line: ballast.reset={} is not ballast.reset or "
                        "ballast.reset=oem",
                        *w.value);
    }
    return out;
}

bool MountReport::ok() const {
    return mounts.ok() && stages_ok && !unlock_error && !config_error && !reset_error && !recovery;
}

nlohmann::json MountReport::to_json() const {
    auto out = mounts.to_json();
    if (unlocked) out["unlocked"] = *unlocked;
    if (unlock_error) out["unlock_error"] = *unlock_error;
    if (reset) out["reset"] = *reset;
    if (reset_poweroff) out["reset_poweroff"] = true;
    if (reset_error) out["reset_error"] = *reset_error;
    if (config_error) out["config_error"] = *config_error;
    if (recovery) out["recovery"] = {{"reason", *recovery}, {"asked", recovery_asked}};
    out["stages_ok"] = stages_ok;
    out["ok"] = ok();
    return out;
}

Result<std::vector<mount::Step>> mount_plan(const MountRequest& req,
                                            const config::AgentSettings& s) {
    return mount::plan(layout_of(req, s));
}

mount::Layout layout_of(const MountRequest& req, const config::AgentSettings& s) {
    mount::Layout layout;
    layout.sysroot = fs::absolute(req.sysroot);
    layout.run_dir = fs::absolute(req.run_dir);
    layout.persistent_device = req.device.empty() ? s.mount.device : req.device;
    layout.oem_device = s.mount.oem_device;
    layout.etc = s.mount.etc;
    layout.persistent_paths = s.mount.persistent_paths;
    return layout;
}

Result<MountReport> assemble_root(mount::Layout layout, const mount::Settings& settings,
                                  bool stages, MountIo& io) {
    BALLAST_TRY(mount::plan(layout));  // a layout that cannot be planned stops here, untouched
    MountReport rep;
    std::string& device = layout.persistent_device;
    std::string blocked;
    rep.recovery_asked = io.recovery_asked();
    if (rep.recovery_asked) {
        // Nothing on persistent is touched: not a pending reset, not the TPM.
        blocked = "a recovery boot (ballast.recovery) neither unlocks nor mounts persistent";
    } else if (!io.wait_for(device, settings.device_timeout)) {
        blocked = fmt::format("{} did not appear within {} s", device,
                              settings.device_timeout.count() / 1000);
    } else if (auto reset = io.finish_reset(device); !reset) {
        // A half-reset partition is never mounted: the node comes up for recovery, saying why.
        rep.reset_error = reset.error().what();
        blocked = "a factory reset is pending and did not finish: " + *rep.reset_error;
    } else {
        if (*reset) {
            rep.reset = (*reset)->what;
            rep.reset_poweroff = (*reset)->poweroff;
            rep.reset_recovery_key = (*reset)->recovery_key;
        }
        if (auto content = io.probe(device); content && *content == "crypto_LUKS") {
            const std::string name(kPersistentMapperName);
            if (auto method = io.unlock(device, name)) {
                rep.unlocked = *method;
                device = "/dev/mapper/" + name;
            } else {
                blocked = "still locked: " + method.error().what();
                rep.unlock_error = method.error().what();
            }
        }
    }
    // OEM is optional, but a link udev makes a moment late must not cost the node its config.
    if (!layout.oem_device.empty())
        (void)io.wait_for(layout.oem_device, std::min<std::chrono::milliseconds>(
                                                 settings.device_timeout, std::chrono::seconds(5)));
    auto steps = BALLAST_TRY(mount::plan(layout));
    steps.front().blocked = blocked;
    // A reset cut while it remade OEM may have left that half-formatted too: its config is not
    // read either until the reset is finished.
    if (rep.reset_error)
        for (auto& st : steps)
            if (st.kind == mount::Step::Kind::device && st.source == layout.oem_device)
                st.blocked = blocked;
    BALLAST_TRY(io.assemble(steps, mount::Step::Phase::storage, rep.mounts));
    // Without persistent the node is not itself: it boots for repair, not as a fresh node on
    // RAM (that would run k3s and the config's commands as a new member of its cluster).
    if (rep.recovery_asked) {
        rep.recovery = "asked for on the kernel command line (ballast.recovery)";
    } else if (!rep.mounts.persistent) {
        const auto& why = blocked.empty() && !rep.mounts.steps.empty()
                              ? rep.mounts.steps.front().detail
                              : blocked;
        rep.recovery = "persistent could not be mounted: " + why;
    }
    // rootfs: with the storage mounted (it sees /oem), before the node's paths.
    if (stages && !rep.recovery) rep.stages_ok = io.run_stage("rootfs");
    BALLAST_TRY(io.assemble(steps, mount::Step::Phase::root, rep.mounts));
    if (stages && !rep.recovery) rep.stages_ok = io.run_stage("initramfs") && rep.stages_ok;
    return rep;
}

Result<MountSettings> mount_settings(const NodeOptions& node, const RootPrefix& sysroot,
                                     bool dry_run) {
    const auto path =
        node.settings_explicit ? node.settings_path : sysroot(config::kDefaultAgentSettingsPath);
    auto settings = config::load_agent_settings(path, node.settings_explicit);
    if (settings) return MountSettings{std::move(*settings), std::nullopt};
    if (dry_run) return std::unexpected(settings.error());
    spdlog::error("mount: {}; assembling the default layout", settings.error().what());
    std::fprintf(stderr, "ballast: mount: %s\nballast: mount: using the default layout\n",
                 settings.error().what().c_str());
    return MountSettings{config::AgentSettings{}, settings.error().what()};
}

Result<MountReport> mount_root(const NodeOptions& node, const MountRequest& req,
                               const MountSettings& ms) {
    const RootPrefix sysroot(fs::absolute(req.sysroot));
    SystemMountIo io(node, sysroot, ms.settings);
    const auto layout = layout_of(req, ms.settings);
    auto rep = BALLAST_TRY(assemble_root(layout, ms.settings.mount, req.stages, io));
    rep.config_error = ms.error;
    // The after-reset stage's unit runs at this boot only (units/stage-after-reset.d).
    if (rep.reset)
        if (auto st = write_file_atomic(layout.run_dir / "reset-finished", *rep.reset + "\n"); !st)
            spdlog::warn("mount: mark the finished reset: {}", st.error().what());
    if (rep.recovery) mark_recovery(layout.run_dir, *rep.recovery, rep.recovery_asked);
    // Its new recovery key was shown on the console; the escrow command runs once the system is
    // up (ballast-escrow.service): until then the key waits in RAM, root's alone.
    if (!rep.reset_recovery_key.empty() && !ms.settings.tpm.recovery_key_command.empty()) {
        if (auto st = keep_for_escrow(layout.run_dir, rep.reset_recovery_key); !st)
            spdlog::error("mount: keep the new recovery key for tpm.recovery_key_command: {}",
                          st.error().what());
        else
            std::fputs(
                "ballast: the new recovery key goes to tpm.recovery_key_command once the "
                "system is up (ballast-escrow.service)\n",
                stderr);
    }
    std::fill(rep.reset_recovery_key.begin(), rep.reset_recovery_key.end(), '\0');
    // ... and ballast-reset-poweroff.service powers the machine off after it, when asked.
    if (rep.reset_poweroff)
        if (auto st = write_file_atomic(layout.run_dir / "reset-poweroff", "\n"); !st)
            spdlog::warn("mount: mark the power-off after the reset: {}", st.error().what());
    if (auto st =
            write_file_atomic(layout.run_dir / "mount.json", json_text(rep.to_json(), 2) + "\n");
        !st)
        spdlog::warn("mount: record the report: {}", st.error().what());
    return rep;
}

}  // namespace ballast::ops
