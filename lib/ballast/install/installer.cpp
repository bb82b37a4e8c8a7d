#include "ballast/install/installer.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <set>

#include "ballast/boot/disk_boot.hpp"
#include "ballast/boot/state.hpp"
#include "ballast/config/facts.hpp"
#include "ballast/config/loader.hpp"
#include "ballast/config/sources.hpp"
#include "ballast/core/atomic_file.hpp"
#include "ballast/core/cmdline.hpp"
#include "ballast/core/failpoint.hpp"
#include "ballast/core/fd.hpp"
#include "ballast/core/process.hpp"
#include "ballast/core/temp_dir.hpp"
#include "ballast/core/text.hpp"
#include "ballast/crypt/encrypted_fs.hpp"
#include "ballast/disk/mkfs.hpp"
#include "ballast/disk/partition.hpp"
#include "ballast/disk/range.hpp"
#include "ballast/stages/runner.hpp"
#include "ballast/system/systemd.hpp"
#include "ballast/update/bundle.hpp"
#include "ballast/update/source.hpp"
#include "ballast/update/writer.hpp"

namespace ballast::install {
namespace {

Status run_stage(const std::string& stage, const Options& o) {
    return run_config_stage(stage, o.config_files, o.auto_mode, o.root);
}

// The cloud-config the settings come from: the --config files; with --auto, this node's own
// sources and kernel command line before them.
Result<std::vector<config::SourceFile>> settings_sources(const Options& o) {
    std::vector<config::SourceFile> srcs;
    if (o.auto_mode) {
        config::Diagnostics diags;
        auto cmdline = read_proc_cmdline();
        srcs = BALLAST_TRY(config::collect_sources(RootPrefix(o.root),
                                                   {.node_sources = true,
                                                    .extra_files = o.config_files,
                                                    .cmdline = cmdline ? *cmdline : ""},
                                                   diags));
        return srcs;
    }
    for (const auto& f : o.config_files) {
        auto text = BALLAST_TRY_CTX(read_file(f, 4u << 20), "config");
        auto kind = config::detect_kind(text, f);
        srcs.push_back(
            {f, text,
             kind == config::SourceKind::no_header ? config::SourceKind::cloud_config : kind});
    }
    return srcs;
}

struct OemFile {
    std::string name, text;
};

// What goes into the new OEM partition, in order: the files the settings came from (with
// --auto, the node's own, less the image's defaults, which the slot has anyway, and the files
// its loader ignored).
std::vector<OemFile> oem_files_of(const Options& o, const std::vector<config::SourceFile>& srcs) {
    std::vector<const config::SourceFile*> kept;
    for (const auto& src : srcs)
        if (!o.auto_mode || (!src.name.empty() && src.name.front() == '/' &&
                             src.name.rfind("/usr/lib/ballast/", 0) != 0 &&
                             src.kind != config::SourceKind::no_header))
            kept.push_back(&src);
    // 10_, 20_, ...: with ten files or more every number gets three digits, so that the names
    // still sort in this order.
    const int width = kept.size() > 9 ? 3 : 2;
    std::vector<OemFile> out;
    for (const auto* src : kept) {
        auto name = fmt::format("{:0{}}_{}", 10 * (out.size() + 1), width,
                                std::filesystem::path(src->name).filename().string());
        if (!name.ends_with(".yaml") && !name.ends_with(".yml")) name += ".yaml";
        out.push_back({std::move(name), src->text});
    }
    return out;
}

// Last in OEM when the settings had install.auto: the installed node must not install itself
// again at every boot (ballast-install.service reads the same files there).
constexpr std::string_view kInstalledOverride =
    "#cloud-config\n"
    "# Written by agentctl install: the files before this one asked for install.auto, which\n"
    "# installed this node. It is off here so that the node does not install itself again.\n"
    "install:\n"
    "  auto: false\n";

constexpr std::string_view kInstalledMarker = "99_ballast-installed.yaml";

// --auto's target. A finished Ballast disk (its ESP holds a boot state, which install writes
// last) is left alone, with the reason. An unfinished one (a layout, no boot state) is not
// erased unattended either: it may be a node whose ESP broke, with its data on it.
Result<std::optional<std::string>> finished_ballast_disk(const std::string& device) {
    auto parts = disk::read_partitions(device);
    if (!parts || !disk::find_label(*parts, disk::kSlotALabel)) return std::nullopt;
    auto disk_boot = boot::DiskBoot::open(device);
    if (!disk_boot || !disk_boot->control().load(false))
        return fail(Errc::exists,
                    "{} holds a Ballast layout but no boot state (an unfinished install, or a "
                    "damaged ESP): not erased unattended; run agentctl install --force by hand",
                    device);
    return fmt::format("{} already holds a Ballast disk", device);
}

std::string mib(uint64_t b) {
    return fmt::format("{} MiB", b / disk::kMiB);
}

}  // namespace

nlohmann::json Report::to_json() const {
    if (!skipped.empty()) return {{"skipped", skipped}};
    auto parts = nlohmann::json::array();
    for (const auto& p : layout)
        parts.push_back({{"number", p.number},
                         {"label", p.label},
                         {"fs", p.fs.empty() ? "raw" : p.fs},
                         {"start", p.start},
                         {"size", p.size}});
    nlohmann::json j = {{"device", device},   {"disk_size", disk_size},   {"dry_run", dry_run},
                        {"version", version}, {"compatible", compatible}, {"partitions", parts},
                        {"after", after},     {"after_note", after_note}, {"no_format", no_format}};
    if (encryption) j["encryption"] = encryption->to_json();
    return j;
}

Status run_config_stage(const std::string& stage, const std::vector<std::string>& files,
                        bool node_sources, const std::string& root) {
    if (files.empty() && !node_sources) return {};
    stages::RunRequest req;
    req.stage = stage;
    req.config_files = files;
    req.node_sources = node_sources;
    if (node_sources) req.config_root = RootPrefix(root);
    return stages::run_or_fail(req);
}

nlohmann::json Report::Encryption::to_json() const {
    return {{"partition", disk::kPersistentLabel},
            {"tpm2_device", tpm2_device},
            {"pcrs", pcrs},
            {"luks_uuid", uuid},
            {"tpm2_keyslot", tpm2_keyslot},
            {"recovery_keyslot", recovery_keyslot},
            {"recovery_key", recovery_key}};
}

Report::Encryption Sealing::describe() const {
    return {tpm.tcti(), crypt::format_pcr_list(pcrs)};
}

Result<Sealing> open_sealing(const std::string& tpm2_device, const std::string& pcrs,
                             const std::string& pcr_bank, std::string_view why) {
    auto bank = BALLAST_TRY_CTX(crypt::parse_pcr_bank(pcr_bank), "tpm.pcr_bank");
    auto mask = BALLAST_TRY_CTX(crypt::parse_pcr_list(pcrs), "tpm.pcrs");
    auto tpm = BALLAST_TRY_CTX(crypt::Tpm2::open(tpm2_device), "{}", why);
    return Sealing{std::move(tpm), bank, mask};
}

Status format_persistent(const std::string& device, const disk::PartitionPlan& persistent,
                         Sealing* seal, const std::string& tmpdir,
                         std::optional<Report::Encryption>& enc,
                         const std::function<void(const std::string&)>& say) {
    if (!seal)
        return disk::make_ext4(device, persistent.start, persistent.size, disk::kPersistentLabel);
    say(fmt::format("encrypting {} (LUKS2, TPM2 at {})", disk::kPersistentLabel, seal->tpm.tcti()));
    auto made =
        BALLAST_TRY_CTX(crypt::make_encrypted_ext4(device, persistent.start, persistent.size,
                                                   disk::kPersistentLabel, seal->tpm, seal->bank,
                                                   seal->pcrs, tmpdir),
                        "encrypt {}", disk::kPersistentLabel);
    if (!enc) enc = seal->describe();
    enc->uuid = made.uuid;
    enc->tpm2_keyslot = made.tpm.keyslot;
    enc->recovery_keyslot = made.recovery.keyslot;
    enc->recovery_key = std::move(made.recovery.key);
    return {};
}

std::string Report::text() const {
    if (!skipped.empty()) return fmt::format("install.auto: nothing to do: {}\n", skipped);
    std::string out =
        fmt::format("{}{}: {} ({}), slot A: {} for {}\n", dry_run ? "plan for " : "installed ",
                    device, mib(disk_size), layout.size(), version, compatible);
    for (const auto& p : layout)
        out += fmt::format("  {} {:<19} {:>5} {:>10} at {}\n", p.number, p.label,
                           p.fs.empty() ? "raw" : p.fs, mib(p.size), mib(p.start));
    if (no_format)
        out +=
            "  no-format: the partitions and filesystems are kept; OEM gets the config "
            "files, persistent data is left alone\n";
    if (encryption)
        out += fmt::format("  {} is LUKS2{}, sealed to the TPM2 at {} (PCRs {})\n",
                           disk::kPersistentLabel,
                           encryption->uuid.empty() ? "" : " " + encryption->uuid,
                           encryption->tpm2_device, encryption->pcrs);
    if (after != "none") out += fmt::format("then: {}\n", after);
    if (!after_note.empty()) out += fmt::format("note: {}\n", after_note);
    return out;
}

namespace {

using Say = std::function<void(const std::string&)>;

// install.encrypted_partitions: the persistent partition (Kairos spells it COS_PERSISTENT).
// OEM holds the cloud-config read before anything could be unlocked: it stays plain.
Result<bool> encrypts_persistent(const std::vector<std::string>& parts) {
    bool persistent = false;
    for (const auto& p : parts) {
        if (p == disk::kPersistentLabel || p == "COS_PERSISTENT")
            persistent = true;
        else
            return fail(Errc::invalid_argument,
                        "install.encrypted_partitions: {} cannot be encrypted (only "
                        "BALLAST_PERSISTENT / COS_PERSISTENT: OEM is read before unlock)",
                        p);
    }
    return persistent;
}

// What this run does: the command line over the cloud-config's install: block.
struct Settings {
    std::string skipped;  // --auto with nothing to do: why (nothing else is set)
    std::string device, bundle, after;
    bool force = false, no_format = false, encrypt = false;
    std::map<std::string, uint32_t> sizes_mib;  // install.partition_sizes_mib
    std::vector<OemFile> oem_files;
};

// --auto on a node install.auto already installed: checked before any config, since a later
// source (a datasource, config_url, the kernel command line) may say install.auto again at
// every boot of the installed node.
Result<std::optional<std::string>> installed_by_auto(const Options& o) {
    auto marker = BALLAST_TRY(RootPrefix(o.root).resolve(fmt::format("/oem/{}", kInstalledMarker)));
    std::error_code ec;
    if (!std::filesystem::exists(marker, ec)) return std::nullopt;
    return fmt::format("this node was installed by install.auto (/oem/{})", kInstalledMarker);
}

// The install: block of the cloud-config (empty without sources).
Result<config::InstallSpec> install_block(const Options& o, std::vector<config::SourceFile> srcs) {
    if (srcs.empty()) return config::InstallSpec{};
    auto facts = config::gather_facts(RootPrefix());
    // At boot, an error in a file holding install: drops it whole, and with it perhaps
    // install.auto: that stops the run rather than reading as "not asked for". A mistake in
    // another file is the boot stage's to report; install.auto off is then answered by the
    // caller.
    auto loaded = BALLAST_TRY(config::load_for_block(std::move(srcs), "install",
                                                     facts ? *facts : nlohmann::json::object()));
    if (loaded.diags.has_errors() && (!o.auto_mode || loaded.config.install.auto_install))
        return fail(Errc::invalid_argument, "{}", loaded.diags.errors_text());
    return std::move(loaded.config.install);
}

// 1. Settings.
Result<Settings> resolve(const Options& o) {
    Settings s;
    if (o.auto_mode)
        if (auto why = BALLAST_TRY(installed_by_auto(o))) return Settings{.skipped = *why};
    auto srcs = BALLAST_TRY(settings_sources(o));
    s.oem_files = oem_files_of(o, srcs);
    const auto in = BALLAST_TRY(install_block(o, std::move(srcs)));
    if (o.auto_mode && !in.auto_install) return Settings{.skipped = "install.auto is not true"};
    s.device = !o.device.empty() ? o.device : in.device;
    if (s.device.empty() || s.device == "auto")
        return fail(Errc::invalid_argument, "no device: give --device or install.device");
    if (o.auto_mode)
        if (auto why = BALLAST_TRY(finished_ballast_disk(s.device)))
            return Settings{.skipped = *why};
    if (in.auto_install)
        s.oem_files.push_back({std::string(kInstalledMarker), std::string(kInstalledOverride)});
    s.bundle = !o.bundle.empty() ? o.bundle : in.source;
    if (s.bundle.empty())
        return fail(Errc::invalid_argument, "no bundle: give --bundle or install.source");
    if (!is_absolute_path(s.bundle) && !update::is_url(s.bundle) && o.bundle.empty())
        return fail(Errc::invalid_argument,
                    "install.source: {} is not the absolute path of a bundle (.tar or folder), an "
                    "https:// URL or an oci: reference",
                    s.bundle);
    s.force = o.force || in.force;
    s.no_format = o.no_format || in.no_format;
    s.after = o.after.value_or(in.poweroff ? "poweroff" : in.reboot ? "reboot" : "none");
    s.encrypt = BALLAST_TRY(encrypts_persistent(in.encrypted_partitions));
    s.sizes_mib = in.partition_sizes_mib;
    return s;
}

// The TPM before anything else: a node that cannot seal is refused before anything is written.
Result<std::optional<Sealing>> sealing_for(const Options& o, const Settings& s) {
    if (!s.encrypt || s.no_format) return std::nullopt;
    return open_sealing(o.tpm2_device, o.pcrs, o.pcr_bank,
                        "install.encrypted_partitions needs a TPM2");
}

// 3. The device: not mounted, blank unless --force. Its size.
Result<uint64_t> check_device(const Settings& s, const Say& say) {
    const uint64_t size = BALLAST_TRY([&]() -> Result<uint64_t> {
        UniqueFd fd(::open(s.device.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd) return fail_errno(errno, s.device);
        return disk::device_size(fd.get(), s.device);
    }());
    if (auto m = BALLAST_TRY(disk::mounted_at(s.device)))
        return fail(Errc::busy, "{} is in use: mounted at {}", s.device, *m);
    if (s.no_format) return size;
    if (auto content = BALLAST_TRY(disk::probe_content(s.device))) {
        auto parts = disk::read_partitions(s.device);
        const std::string what =
            parts && disk::find_label(*parts, disk::kSlotALabel) ? "a Ballast disk" : *content;
        if (!s.force)
            return fail(Errc::exists, "{} is not empty ({}); add --force to erase it", s.device,
                        what == "a Ballast disk" ? "already a Ballast disk" : "it holds " + what);
        say(fmt::format("{}: erasing {} (--force)", s.device, what));
    }
    return size;
}

// 4. The plan: the partitions (new, or the ones kept with no-format) and what follows.
Result<Report> plan(const Options& o, const Settings& s, const update::Checked& checked,
                    uint64_t disk_size, const std::optional<Sealing>& seal) {
    auto size_of = [&](const std::optional<uint64_t>& cli, const char* key, uint64_t def) {
        if (cli) return *cli;
        auto it = s.sizes_mib.find(key);
        return it != s.sizes_mib.end() && it->second ? uint64_t(it->second) : def;
    };
    Report rep;
    rep.device = s.device;
    rep.disk_size = disk_size;
    if (s.no_format) {
        std::vector<disk::FoundPartition> found;
        for (const auto& p : BALLAST_TRY(disk::read_partitions(s.device))) {
            auto content = BALLAST_TRY(disk::probe_content(s.device, p.start, p.size));
            found.push_back({p.number, p.label, p.type, p.start, p.size, content.value_or("")});
        }
        rep.layout = BALLAST_TRY_CTX(
            disk::check_existing_layout(found, checked.manifest.image.size), "{}", s.device);
        if (s.encrypt && rep.layout.back().fs != "crypto_LUKS")
            return fail(Errc::invalid_argument,
                        "install.encrypted_partitions: {} on {} is not encrypted, and no-format "
                        "keeps it as it is",
                        disk::kPersistentLabel, s.device);
    } else {
        disk::LayoutOptions lo;
        lo.disk_size = disk_size;
        lo.image_size = checked.manifest.image.size;
        lo.efi_mib = size_of(o.efi_mib, "efi", 64);
        lo.oem_mib = size_of(o.oem_mib, "oem", 64);
        lo.slot_mib = size_of(o.slot_mib, "slot", 0);
        lo.persistent_mib = size_of(o.persistent_mib, "persistent", 0);
        rep.layout = BALLAST_TRY(disk::plan_layout(lo));
    }
    rep.no_format = s.no_format;
    rep.version = checked.manifest.version;
    rep.compatible = checked.manifest.compatible;
    rep.dry_run = o.dry_run;
    rep.after = s.after;
    if (seal) rep.encryption = seal->describe();
    struct stat st {};
    if (s.after != "none" && ::stat(s.device.c_str(), &st) == 0 && !S_ISBLK(st.st_mode)) {
        rep.after_note = fmt::format(
            "not going to {}: {} is an image file, not this machine's disk", s.after, s.device);
        rep.after = "none";
    }
    return rep;
}

// Every label is in the plan by construction.
const disk::PartitionPlan& part(const Report& rep, std::string_view label) {
    for (const auto& p : rep.layout)
        if (p.label == label) return p;
    std::abort();
}

// 5. Partitions and filesystems: GPT, ESP, OEM (with the cloud-config), persistent (encrypted
// when asked), slot B blank. With no-format OEM's files are put in, slot B is blanked, and the
// rest stays.
Status write_filesystems(const Settings& s, std::optional<Sealing>& seal, const std::string& tmp,
                         Report& rep, const Say& say) {
    const std::string& device = s.device;
    if (!s.no_format) {
        say("writing the partition table");
        BALLAST_TRY(disk::write_gpt(device, rep.layout));
        failpoint("install.partitioned");
    }
    const auto &esp = part(rep, disk::kEfiLabel), &oem = part(rep, disk::kOemLabel),
               &b = part(rep, disk::kSlotBLabel), &persistent = part(rep, disk::kPersistentLabel);
    if (!s.no_format) {
        say("formatting");
        BALLAST_TRY(disk::make_vfat(device, esp.start, esp.size, disk::kEfiLabel));
    }
    const std::string oem_dir = tmp + "/oem";
    std::filesystem::create_directories(oem_dir);
    for (const auto& f : s.oem_files)
        BALLAST_TRY(write_file_atomic(oem_dir + "/" + f.name, f.text, {.mode = 0600}));
    if (s.no_format) {
        // The OEM's other files stay: a reinstall must not drop config put there since.
        for (const auto& f : std::filesystem::directory_iterator(oem_dir)) {
            say(fmt::format("{}: {}", disk::kOemLabel, f.path().filename().string()));
            BALLAST_TRY_CTX(
                disk::ext4_put(device, oem.start, f.path().string(), f.path().filename().string()),
                "{}", disk::kOemLabel);
        }
        say(fmt::format("{}: kept as it is ({})", disk::kPersistentLabel, persistent.fs));
    } else {
        BALLAST_TRY(disk::make_ext4(device, oem.start, oem.size, disk::kOemLabel, oem_dir));
        BALLAST_TRY(format_persistent(device, persistent, seal ? &*seal : nullptr, tmp,
                                      rep.encryption, say));
    }
    // Slot B is empty: nothing that looks like a filesystem may be left there.
    auto rb =
        BALLAST_TRY(disk::ByteRange::open(device, b.start, b.size, disk::ByteRange::Mode::write));
    const std::string zero(update::kHeaderSize, '\0');
    BALLAST_TRY(rb.write_at(zero.data(), zero.size(), 0));
    return rb.sync();
}

// 6. The image into slot A, verified (the upgrade path's writer), streamed from wherever the
// bundle is.
Status write_slot_a(const std::string& device, const disk::PartitionPlan& a,
                    const update::OpenedSource& src, const Say& say) {
    const auto& checked = src.checked;
    say(fmt::format("writing {} {} into slot A{}", checked.manifest.os_name,
                    checked.manifest.version, src.remote ? " from " + src.where : ""));
    auto reader = BALLAST_TRY(src.open_image());
    int last = -1;
    auto progress = [&](update::WritePhase ph, uint64_t done, uint64_t total) {
        int pct = int(done * 100 / std::max<uint64_t>(total, 1));
        int key = int(ph) * 1000 + pct / 25;
        if (key == last) return;
        last = key;
        say(fmt::format("  {} {}%",
                        ph == update::WritePhase::reading_back ? "verifying" : "writing", pct));
    };
    BALLAST_TRY_CTX(
        update::write_image(reader, checked.manifest.image.size, checked.manifest.image.sha256,
                            device, a.start, a.size, progress),
        "slot A");
    return {};
}

// 7. GRUB onto the ESP, with both boot-state copies present but locked (no boot state yet:
// an install cut here reads as unfinished), then the boot state through the boot control, the
// install's last write.
Status install_boot(const Options& o, const std::string& device, const disk::PartitionPlan& esp,
                    const std::string& version, const std::string& tmp, const Say& say) {
    say("installing GRUB");
    const std::string efi = tmp + "/BOOTX64.EFI";
    ProcessOptions p;
    p.argv = {"grub-mkimage", "-O",      "x86_64-efi", "-p",     "/grub",      "-d",
              o.grub_modules, "-o",      efi,          "normal", "part_gpt",   "fat",
              "ext2",         "squash4", "gzio",       "xzio",   "zstd",       "loadenv",
              "regexp",       "test",    "linux",      "echo",   "configfile", "serial",
              "terminal",     "tpm",     "true"};
    p.timeout = std::chrono::minutes(2);
    BALLAST_TRY(run_checked(p, "build GRUB's EFI image (grub-efi-amd64-bin)"));
    const auto initial = boot::initial_state(boot::Slot::A, version);
    BALLAST_TRY(write_file_atomic(tmp + "/grub.cfg", std::string(grub_cfg())));
    const auto locked = BALLAST_TRY(boot::grubenv::serialize(boot::to_vars(initial, true)));
    BALLAST_TRY(write_file_atomic(tmp + "/grubenv", locked));
    for (const char* d : {"/EFI/BOOT", "/grub/env1", "/grub/env2"})
        BALLAST_TRY(disk::fat_mkdir(device, esp.start, d));
    BALLAST_TRY(disk::fat_put(device, esp.start, efi, "/EFI/BOOT/BOOTX64.EFI"));
    BALLAST_TRY(disk::fat_put(device, esp.start, tmp + "/grub.cfg", "/grub/grub.cfg"));
    BALLAST_TRY(disk::fat_put(device, esp.start, tmp + "/grubenv", boot::kEnvCopy2));
    BALLAST_TRY(disk::fat_put(device, esp.start, tmp + "/grubenv", boot::kEnvCopy1));
    failpoint("install.boot-files");
    auto disk_boot = BALLAST_TRY(boot::DiskBoot::open(device));
    BALLAST_TRY_CTX(disk_boot.control().initialize(initial), "boot state");
    UniqueFd fd(::open(device.c_str(), O_RDWR | O_CLOEXEC));
    if (!fd || ::fsync(fd.get()) < 0) return fail_errno(errno, "sync " + device);
    return {};
}

}  // namespace

Result<Report> run(const Options& o) {
    const Say say = [&](const std::string& line) {
        if (o.say) o.say(line);
    };
    // 1. Settings, and the TPM when the persistent partition is to be encrypted.
    const Settings s = BALLAST_TRY(resolve(o));
    if (!s.skipped.empty()) return Report{.skipped = s.skipped};
    auto seal = BALLAST_TRY(sealing_for(o, s));
    // 2. The bundle: signature, manifest, image present and sized. Nothing is written before.
    update::SourceOptions so;
    so.keyring = o.keyring.empty() ? update::default_keyring("/") : o.keyring;
    so.registry_auth = o.registry_auth;
    so.http = o.http;
    const auto src = BALLAST_TRY(update::open_source(s.bundle, so));
    const auto& checked = src.checked;
    BALLAST_TRY(update::check_bootable(checked, s.bundle));
    // 3. and 4.
    const uint64_t disk_size = BALLAST_TRY(check_device(s, say));
    auto rep = BALLAST_TRY(plan(o, s, checked, disk_size, seal));
    if (o.dry_run) return rep;

    BALLAST_TRY(run_stage("before-install", o));
    auto tmp = BALLAST_TRY(TempDir::make("install"));
    BALLAST_TRY(write_filesystems(s, seal, tmp.path(), rep, say));
    BALLAST_TRY(write_slot_a(s.device, part(rep, disk::kSlotALabel), src, say));
    BALLAST_TRY(install_boot(o, s.device, part(rep, disk::kEfiLabel), checked.manifest.version,
                             tmp.path(), say));
    failpoint("install.done");
    BALLAST_TRY(run_stage("after-install", o));
    return rep;
}

Status finish(const Report& r) {
    if (!r.skipped.empty() || r.dry_run || r.after == "none") return {};
    if (!systemd::running())
        return fail(Errc::unsupported, "cannot {}: systemd is not running here", r.after);
    auto m = BALLAST_TRY_CTX(systemd::Manager::connect(), "{}", r.after);
    return r.after == "reboot" ? m.reboot() : m.poweroff();
}

}  // namespace ballast::install
