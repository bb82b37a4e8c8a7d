#include "ballast/install/reset.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>

#include "ballast/boot/disk_boot.hpp"
#include "ballast/config/facts.hpp"
#include "ballast/config/loader.hpp"
#include "ballast/core/cmdline.hpp"
#include "ballast/core/failpoint.hpp"
#include "ballast/core/fd.hpp"
#include "ballast/core/temp_dir.hpp"
#include "ballast/disk/mkfs.hpp"
#include "ballast/disk/partition.hpp"
#include "ballast/disk/range.hpp"

namespace ballast::install {

Result<Luks2Areas> luks2_areas(std::string_view head) {
    constexpr std::string_view kMagic("LUKS\xba\xbe", 6);
    auto be = [&](size_t at, size_t n) {
        uint64_t v = 0;
        for (size_t i = 0; i < n; ++i)
            v = v << 8 | uint8_t(head[at + i]);
        return v;
    };
    if (head.size() < 4096 || head.substr(0, 6) != kMagic || be(6, 2) != 2)
        return fail(Errc::not_found, "no LUKS2 header");
    Luks2Areas a;
    a.hdr_size = be(8, 8);
    // The format allows 16 KiB to 4 MiB, powers of two.
    if (a.hdr_size < 16384 || a.hdr_size > (4u << 20) || (a.hdr_size & (a.hdr_size - 1)))
        return fail(Errc::parse, "LUKS2 header: hdr_size {} is not valid", a.hdr_size);
    if (head.size() < a.hdr_size)
        return fail(Errc::parse, "LUKS2 header: {} bytes read, its header has {}", head.size(),
                    a.hdr_size);
    auto area = head.substr(4096, a.hdr_size - 4096);
    area = area.substr(0, area.find('\0'));
    auto j = nlohmann::json::parse(area, nullptr, false);
    if (j.is_discarded() || !j.is_object())
        return fail(Errc::parse, "LUKS2 header: its JSON area does not parse");
    // Sizes and offsets are decimal strings; anything else, or beyond what a header can
    // describe, is damage (a bound keeps a bad header from zeroing a whole partition).
    constexpr uint64_t kMaxArea = 1ull << 30;
    auto number = [](const nlohmann::json& v) -> std::optional<uint64_t> {
        if (!v.is_string()) return std::nullopt;
        const auto& t = v.get_ref<const std::string&>();
        uint64_t n = 0;
        auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), n);
        if (ec != std::errc() || end != t.data() + t.size() || n > kMaxArea) return std::nullopt;
        return n;
    };
    uint64_t keyslots_size = 0;
    if (j.contains("config") && j["config"].is_object() && j["config"].contains("keyslots_size")) {
        auto n = number(j["config"]["keyslots_size"]);
        if (!n) return fail(Errc::parse, "LUKS2 header: config.keyslots_size is not valid");
        keyslots_size = *n;
    }
    a.data_offset = 2 * a.hdr_size + keyslots_size;
    // Every segment starts after the key material; the first one bounds it.
    if (j.contains("segments") && j["segments"].is_object())
        for (const auto& [id, seg] : j["segments"].items()) {
            if (!seg.is_object() || !seg.contains("offset")) continue;
            auto n = number(seg["offset"]);
            if (!n) return fail(Errc::parse, "LUKS2 header: segments.{}.offset is not valid", id);
            a.data_offset = std::max(a.data_offset, *n);
        }
    if (a.data_offset <= 2 * a.hdr_size)
        return fail(Errc::parse, "LUKS2 header: no keyslots area after the headers");
    return a;
}

nlohmann::json ResetReport::to_json() const {
    nlohmann::json j = {{"device", device},         {"dry_run", dry_run},
                        {"resumed", resumed},       {"persistent_wiped", !request.keep_persistent},
                        {"oem_wiped", request.oem}, {"poweroff", request.poweroff},
                        {"erased", erased},         {"persistent_before", persistent_before}};
    if (encryption) j["encryption"] = encryption->to_json();
    if (stage_error) j["stage_error"] = *stage_error;
    return j;
}

std::string ResetReport::text() const {
    std::string out = fmt::format("{}{}: ", dry_run ? "plan for resetting " : "reset ", device);
    if (request.keep_persistent)
        out += fmt::format("{} kept (reset-persistent: false)\n", disk::kPersistentLabel);
    else
        out += fmt::format("{} {} ({}), made anew{}\n", disk::kPersistentLabel,
                           dry_run ? "to be erased" : "erased", erased,
                           encryption ? " as LUKS2" : " as ext4");
    if (resumed)
        out +=
            "  this finished a reset asked for earlier (on the running node, or cut short), with "
            "its settings\n";
    out += fmt::format("  {}: {}\n", disk::kOemLabel,
                       request.oem ? (dry_run ? "to be wiped" : "wiped") : "kept");
    if (encryption)
        out += fmt::format("  {} is LUKS2{}, sealed to the TPM2 at {} (PCRs {})\n",
                           disk::kPersistentLabel,
                           encryption->uuid.empty() ? "" : " " + encryption->uuid,
                           encryption->tpm2_device, encryption->pcrs);
    if (stage_error) out += fmt::format("  after-reset stage failed: {}\n", *stage_error);
    return out;
}

namespace {

using Say = std::function<void(const std::string&)>;

struct ResetDisk {
    disk::PartitionPlan oem, persistent;
};

// The partitions a reset touches, by label: their content is not checked (an interrupted reset
// leaves them blank, a damaged one is why the operator resets).
Result<ResetDisk> find_partitions(const std::string& device) {
    auto parts = BALLAST_TRY(disk::read_partitions(device));
    ResetDisk d;
    for (auto [label, out] :
         {std::pair{disk::kOemLabel, &d.oem}, std::pair{disk::kPersistentLabel, &d.persistent}}) {
        auto p = disk::find_label(parts, label);
        if (!p || !disk::find_label(parts, disk::kEfiLabel))
            return fail(Errc::invalid_argument, "{}: no {} partition: not a Ballast disk", device,
                        p ? disk::kEfiLabel : label);
        *out = {p->number, label, p->type, "", p->start, p->size};
    }
    return d;
}

// Zeroes [from, to) of `r` and syncs: nothing of what was there can be read back.
Status zero(const disk::ByteRange& r, uint64_t from, uint64_t to) {
    const std::string zeros(std::min<uint64_t>(to - from, 1u << 20), '\0');
    for (uint64_t at = from; at < to; at += zeros.size())
        BALLAST_TRY(r.write_at(zeros.data(), std::min<uint64_t>(zeros.size(), to - at), at));
    return r.sync();
}

// Step 2: the old data made unreadable. A LUKS2 header loses its keyslots' key material first
// (from then on no key opens the data), then both headers; anything else, or what is left, is
// discarded where the device can.
Result<std::string> erase_persistent(const std::string& device, const disk::PartitionPlan& p,
                                     const Say& say) {
    auto r =
        BALLAST_TRY(disk::ByteRange::open(device, p.start, p.size, disk::ByteRange::Mode::write));
    std::string head(std::min<uint64_t>(p.size, 4u << 20), '\0');
    BALLAST_TRY(r.read_at(head.data(), head.size(), 0));
    std::string how;
    if (auto areas = luks2_areas(head)) {
        say(fmt::format("{}: destroying every keyslot and both LUKS2 headers", p.label));
        BALLAST_TRY(zero(r, 2 * areas->hdr_size, std::min(areas->data_offset, p.size)));
        failpoint("reset.keyslots-erased");
        BALLAST_TRY(zero(r, 0, 2 * areas->hdr_size));
        how = "crypto-erase";
    } else if (head.starts_with(std::string_view("LUKS\xba\xbe", 6))) {
        // LUKS1, or a LUKS2 header too damaged to read: its areas are within the first 16 MiB
        // (cryptsetup's largest default), all of which goes.
        say(fmt::format("{}: overwriting a LUKS header it cannot read ({})", p.label,
                        areas.error().what()));
        BALLAST_TRY(zero(r, 0, std::min<uint64_t>(p.size, 16u << 20)));
        how = "crypto-erase";
    }
    if (auto d = r.discard(); d) {
        how += how.empty() ? "discard" : ", discard";
    } else if (d.error().code() == Errc::unsupported) {
        // Without discard the old blocks of a plain partition stay on the device until
        // overwritten; the new filesystem never shows them.
        if (how.empty()) how = "reformat (the device cannot discard)";
    } else {
        return std::unexpected(std::move(d.error()));
    }
    return how;
}

// Step 5: persistent made anew as install makes it, synced.
Status remake_persistent(const ResetOptions& o, const ResetDisk& d, std::optional<Sealing>& seal,
                         ResetReport& rep, const Say& say) {
    // Scratch files only for a LUKS2 volume (the initramfs may have no /tmp).
    std::optional<TempDir> tmp;
    if (seal) tmp.emplace(BALLAST_TRY(TempDir::make("reset", o.tmp_base)));
    rep.encryption.reset();
    // On a running disk (the initramfs) through the partition's own node: mke2fs opens its
    // device exclusively, and the disk has the slot mounted.
    const auto at = BALLAST_TRY(disk::range_node(o.device, d.persistent.start, d.persistent.size));
    auto persistent = d.persistent;
    persistent.start = at.offset;
    BALLAST_TRY(format_persistent(at.path, persistent, seal ? &*seal : nullptr,
                                  tmp ? tmp->path() : std::string(), rep.encryption, say));
    // Both: a partition's node has its own cache.
    for (const auto& path : {o.device, at.path}) {
        UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
        if (!fd || ::fsync(fd.get()) < 0) return fail_errno(errno, "sync " + path);
    }
    return {};
}

// The reset: block of the --config files (and of the node's own sources), read as install
// reads install:. A file holding one that does not load stops the reset: its settings must not
// silently become the defaults.
Result<config::ResetSpec> reset_block(const ResetOptions& o) {
    if (o.config_files.empty() && !o.node_config) return config::ResetSpec{};
    config::Diagnostics diags;
    std::string cmdline;
    if (o.node_config)
        if (auto c = read_proc_cmdline()) cmdline = *c;
    auto srcs = BALLAST_TRY(config::collect_sources(
        RootPrefix(o.root),
        {.node_sources = o.node_config, .extra_files = o.config_files, .cmdline = cmdline}, diags));
    auto facts = config::gather_facts(RootPrefix(o.root));
    auto loaded = BALLAST_TRY_CTX(
        config::load_for_block(std::move(srcs), "reset", facts ? *facts : nlohmann::json::object()),
        "reset: block");
    return loaded.config.reset;
}

// What this reset asks for: the command over the reset: block.
Result<boot::ResetRequest> wanted(const ResetOptions& o, bool encrypted_now,
                                  const config::ResetSpec& spec, const std::string& where) {
    if (o.poweroff.value_or(false) && !o.request_only)
        return fail(Errc::invalid_argument,
                    "poweroff is for this node's reset (its initramfs powers off when done); "
                    "--device resets now");
    boot::ResetRequest r;
    r.oem = o.reset_oem.value_or(spec.oem);
    r.keep_persistent = !o.reset_persistent.value_or(spec.persistent);
    r.encrypted = !r.keep_persistent && (o.encrypt || encrypted_now);
    r.poweroff = o.request_only && o.poweroff.value_or(spec.poweroff);
    if (r.keep_persistent && o.encrypt)
        return fail(Errc::invalid_argument,
                    "--encrypt remakes persistent, which this reset keeps (reset-persistent: "
                    "false{})",
                    where);
    if (r.keep_persistent && !r.oem)
        return fail(Errc::invalid_argument,
                    "nothing to reset: persistent is kept and OEM too (reset-persistent and "
                    "reset-oem false{})",
                    where);
    return r;
}

}  // namespace

Result<ResetReport> reset(const ResetOptions& o) {
    const Say say = [&](const std::string& line) {
        if (o.say) o.say(line);
    };
    if (o.device.empty()) return fail(Errc::invalid_argument, "no device: give --device");
    // 1. The disk: a Ballast layout, OEM and persistent not mounted, a boot state.
    const auto d = BALLAST_TRY(find_partitions(o.device));
    auto disk_boot = BALLAST_TRY(boot::DiskBoot::open(o.device));
    // Read only: nothing is written before every check has passed (the request's write repairs
    // a half-written store anyway).
    auto state = BALLAST_TRY_CTX(disk_boot.control().load(false), "{}: boot state", o.device);

    ResetReport rep;
    rep.device = o.device;
    rep.dry_run = o.dry_run;
    rep.persistent_before =
        BALLAST_TRY(disk::probe_content(o.device, d.persistent.start, d.persistent.size))
            .value_or("");
    // What is asked for; an interrupted reset is finished as it was asked for.
    const auto spec = BALLAST_TRY(reset_block(o));
    rep.reboot = spec.reboot.value_or(true);
    const std::string where =
        spec.pos.file.empty() ? std::string() : " at " + config::to_string(spec.pos);
    boot::ResetRequest req;
    if (!state.reset) {
        req = BALLAST_TRY(wanted(o, rep.persistent_before == "crypto_LUKS", spec, where));
    } else {
        req = *state.reset;
        rep.resumed = true;
        say(fmt::format("{}: finishing the reset asked for earlier (persistent {}, OEM {})",
                        o.device,
                        req.keep_persistent ? "kept"
                        : req.encrypted     ? "wiped, encrypted anew"
                                            : "wiped",
                        req.oem ? "wiped" : "kept"));
    }
    rep.request = req;
    if (o.request_only && rep.resumed) return rep;  // pending already: as it is
    if (o.request_only && o.booted && state.at(*o.booted).trial)
        return fail(Errc::busy,
                    "slot {} is on trial after an upgrade: wait for its health check to commit it "
                    "(or roll back) before a factory reset",
                    boot::name(*o.booted));
    // Only what the reset writes must be free: in the initramfs, the slot is mounted already.
    for (const auto* p : {&d.persistent, &d.oem}) {
        if (o.request_only || (p == &d.oem && !req.oem) ||
            (p == &d.persistent && req.keep_persistent))
            continue;
        if (auto m = BALLAST_TRY(disk::mounted_at(o.device, p->start, p->size)))
            return fail(Errc::busy, "{} is in use: its {} is mounted at {}", o.device, p->label,
                        *m);
    }
    // The TPM before anything is written: a node that cannot seal is refused first.
    std::optional<Sealing> seal;
    if (req.encrypted) {
        seal = BALLAST_TRY(open_sealing(
            o.tpm2_device, o.pcrs, o.pcr_bank,
            fmt::format("reset of an encrypted {} needs a TPM2", disk::kPersistentLabel)));
        rep.encryption = seal->describe();
    }
    if (o.dry_run) {
        if (!req.keep_persistent)
            rep.erased = rep.persistent_before == "crypto_LUKS" ? "crypto-erase, discard"
                                                                : "discard where the device can";
        return rep;
    }
    if (!rep.resumed) BALLAST_TRY(run_config_stage("before-reset", o.config_files));

    // 2. The request, in the boot state's one crash-safe write.
    if (!rep.resumed) {
        state.reset = req;
        BALLAST_TRY_CTX(disk_boot.control().save(state), "{}: boot state", o.device);
    }
    failpoint("reset.requested");
    if (o.request_only) return rep;
    // 3. The old data, gone.
    if (!req.keep_persistent) {
        rep.erased = BALLAST_TRY_CTX(erase_persistent(o.device, d.persistent, say), "erase {}",
                                     disk::kPersistentLabel);
        failpoint("reset.erased");
    }
    // 4. OEM, if asked.
    if (req.oem) {
        say(fmt::format("{}: wiping", disk::kOemLabel));
        const auto at = BALLAST_TRY(disk::range_node(o.device, d.oem.start, d.oem.size));
        BALLAST_TRY(disk::make_ext4(at.path, at.offset, d.oem.size, disk::kOemLabel));
        failpoint("reset.oem-wiped");
    }
    // 5. Persistent as install makes it.
    if (!req.keep_persistent) BALLAST_TRY(remake_persistent(o, d, seal, rep, say));
    failpoint("reset.formatted");
    // 6. Done: the request goes, in one write.
    state.reset.reset();
    BALLAST_TRY_CTX(disk_boot.control().save(state), "{}: boot state", o.device);
    failpoint("reset.done");
    // The reset is done: a failing stage must not cost the new recovery key its one showing.
    if (auto st = run_config_stage("after-reset", o.config_files); !st)
        rep.stage_error = st.error().what();
    return rep;
}

}  // namespace ballast::install
