#include "ballast/update/upgrade.hpp"

#include <fcntl.h>
#include <sys/file.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <mutex>

#include <spdlog/spdlog.h>

#include "ballast/core/atomic_file.hpp"
#include "ballast/core/duration.hpp"
#include "ballast/core/failpoint.hpp"
#include "ballast/core/fd.hpp"

namespace ballast::update {
namespace {

constexpr uint64_t kJournalEvery = 256u << 20;  // bytes between journal updates while writing

Status run_stage(const std::string& stage, const UpgradeEnv& env) {
    return env.run_stage ? env.run_stage(stage) : Status{};
}

// Hooks that must succeed before a new slot may be activated.
Status post_install_hooks(const UpgradeEnv& env) {
    BALLAST_TRY(run_stage("after-upgrade", env));
    if (env.key_hook) BALLAST_TRY_CTX(env.key_hook(), "TPM2 keys for the new slot");
    return {};
}

// One upgrade at a time per node, whoever starts it (the daemon's job, or ballast-agent upgrade
// by hand): held for the whole run, released by the kernel however the process ends.
Result<UniqueFd> lock_upgrades(const std::filesystem::path& state_dir) {
    std::error_code ec;
    std::filesystem::create_directories(state_dir, ec);
    if (ec) return fail_errno(ec.value(), state_dir.string());
    const auto path = state_dir / "upgrade.lock";
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) return fail_errno(errno, path.string());
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) < 0) {
        if (errno == EWOULDBLOCK)
            return fail(Errc::busy, "busy: another upgrade is running on this node ({})",
                        path.string());
        return fail_errno(errno, "lock " + path.string());
    }
    return fd;
}

}  // namespace

std::filesystem::path journal_path(const std::filesystem::path& state_dir) {
    return state_dir / "upgrade.json";
}

std::filesystem::path refused_path(const std::filesystem::path& state_dir) {
    return state_dir / "refused.json";
}

std::string node_compatible(const std::string& configured, const RootPrefix& root) {
    if (!configured.empty()) return configured;
    auto text = read_file(root("/usr/lib/ballast/compatible"), 4096);
    if (!text) return "";
    std::string line = text->substr(0, text->find('\n'));
    while (!line.empty() && (line.back() == ' ' || line.back() == '\r'))
        line.pop_back();
    return line;
}

nlohmann::json UpgradeResult::to_json() const {
    return {{"ok", true},
            {"version", version},
            {"from_version", from_version},
            {"source", where},
            {"target", boot::name(target)},
            {"bytes", bytes},
            {"downloaded", downloaded},
            {"seconds", seconds},
            {"already", already},
            {"dry_run", dry_run},
            {"plan",
             {{"delta", plan.delta},
              {"fetch", plan.fetch},
              {"requests", plan.requests},
              {"copy", plan.copy},
              {"in_place", plan.in_place},
              {"why", plan.why}}}};
}

namespace {

// The bundle against this node: unchanged since an interrupted write, made for this node, one
// GRUB can boot, and small enough for the target slot.
Status check_bundle_fits(const UpgradeRequest& req, const UpgradeEnv& env, const Checked& checked,
                         boot::Slot target) {
    const auto& m = checked.manifest;
    if (req.expect_manifest_sha256 && *req.expect_manifest_sha256 != checked.manifest_sha256)
        return fail(Errc::verification,
                    "{}: the bundle changed since the interrupted write (manifest sha256 {} "
                    "instead of {})",
                    req.source, checked.manifest_sha256, *req.expect_manifest_sha256);
    if (env.compatible.empty())
        return fail(Errc::invalid_argument,
                    "this node's compatible string is unknown: set update.compatible in "
                    "agent.yaml (or ship /usr/lib/ballast/compatible in the image)");
    if (m.compatible != env.compatible)
        return fail(Errc::invalid_argument,
                    "{}: the bundle is for '{}', this node is '{}'; refusing", req.source,
                    m.compatible, env.compatible);
    BALLAST_TRY(check_bootable(checked, req.source));
    const auto& part = env.slots.at(target);
    if (m.image.size > part.size)
        return fail(Errc::invalid_argument, "the image ({} bytes) does not fit slot {} ({} bytes)",
                    m.image.size, boot::name(target), part.size);
    return {};
}

// What the boot state allows: the booted slot good (I1: the target is then not the only
// fallback) and not on trial (I4). A result when the version already runs there: nothing to do.
Result<std::optional<UpgradeResult>> check_boot_state(const UpgradeRequest& req,
                                                      const boot::BootState& state,
                                                      boot::Slot booted, const Manifest& m) {
    const boot::Slot target = boot::other(booted);
    if (state.at(booted).ok && state.at(booted).version == m.version && !req.force) {
        UpgradeResult r;
        r.version = r.from_version = m.version;
        r.where = req.source;
        r.target = booted;
        r.already = true;
        spdlog::info("slot {} already runs {}{}; nothing to do", boot::name(booted), m.version,
                     state.at(booted).trial ? " (on trial until its health check passes)" : "");
        return r;
    }
    if (!state.at(booted).ok)
        return fail(Errc::invalid_argument,
                    "slot {} (booted) is marked bad; slot {} is the only fallback and is not "
                    "overwritten (agentctl mark-good {} first, if this slot is healthy)",
                    boot::name(booted), boot::name(target), boot::name(booted));
    if (state.at(booted).trial)
        return fail(Errc::busy,
                    "slot {} is on trial: it must pass its health check (or be marked good) "
                    "before slot {} may be overwritten",
                    boot::name(booted), boot::name(target));
    return std::nullopt;
}

// A version that failed on this node is refused, unless forced (it is then forgotten).
Status check_refused(const std::filesystem::path& state_dir, const Manifest& m, bool force) {
    const auto refused_file = refused_path(state_dir);
    for (const auto& r : BALLAST_TRY(load_refused(refused_file))) {
        if (r.version != m.version) continue;
        if (!force)
            return fail(Errc::invalid_argument,
                        "version {} failed on this node ({}, {}); refusing it (agentctl upgrade "
                        "--force tries it again)",
                        m.version, r.reason, r.at);
        BALLAST_TRY(remove_refused(refused_file, m.version));
    }
    return {};
}

Journal new_journal(const UpgradeRequest& req, const UpgradeEnv& env, const Checked& checked,
                    const boot::BootState& state, boot::Slot booted) {
    Journal j;
    j.state = JobState::writing;
    j.target = boot::other(booted);
    j.from = booted;
    j.source = req.source;
    j.version = checked.manifest.version;
    j.from_version = state.at(booted).version;
    j.manifest_sha256 = checked.manifest_sha256;
    j.tries = env.tries;
    j.force = req.force;
    j.reboot = req.reboot;
    j.started = now_utc();
    return j;
}

// What the node holds that a delta download may reuse: the booted slot (and the index kept
// when it was written); the target too when an interrupted write of this very bundle left part
// of it there (hashing the target costs a read of the image's size, worth it only then).
Holdings holdings(const UpgradeEnv& env, const Checked& checked, boot::Slot booted,
                  const std::optional<Journal>& previous) {
    Holdings h;
    h.booted = env.slots.at(booted);
    h.booted_index = kept_index_path(env.state_dir, booted);
    const boot::Slot target = boot::other(booted);
    if (previous && previous->manifest_sha256 == checked.manifest_sha256 &&
        previous->target == target &&
        (previous->state == JobState::writing || previous->state == JobState::failed))
        h.target = env.slots.at(target);
    return h;
}

Result<DownloadPlan> plan_download(const OpenedSource& src, const Holdings& held) {
    if (src.plan) return src.plan(held);
    DownloadPlan p;  // a source that does not plan is read whole
    p.image = src.checked.manifest.image.size;
    p.fetch = src.remote ? p.image : 0;
    return p;
}

// The index of what a slot holds, kept for the next delta (a hint: every chunk is re-hashed
// when read). Losing it costs a recomputation, so a failure to keep it is only a warning.
void keep_index(const std::filesystem::path& path, const ChunkIndex& idx) {
    std::error_code ec;
    std::filesystem::create_directories(path.parent_path(), ec);
    Status st = ec ? fail_errno(ec.value(), path.parent_path().string())
                   : write_file_atomic(path, serialize_index(idx), {.mode = 0600});
    if (!st) spdlog::warn("keep the slot's chunk index: {}", st.error().what());
}

// Steps 4-5 into the target, with progress and the journal's byte count every kJournalEvery.
// A delta reports its progress in bytes downloaded of those planned.
Status write_target(ImageReader& reader, const Manifest& m, const boot::SlotDevice& part,
                    Journal& j, const std::filesystem::path& jpath, const UpgradeProgress& say,
                    const DownloadPlan& plan, const DownloadMeter& meter) {
    std::mutex jm;
    std::atomic<uint64_t> bytes_written{0};
    uint64_t next_journal = kJournalEvery;
    auto progress = [&](WritePhase ph, uint64_t done, uint64_t total) {
        // Read-back runs alongside the write; it is reported as its own phase once the write is
        // complete, so each phase's rate and ETA mean one thing. The header's write is not a
        // phase of its own.
        if (ph == WritePhase::reading_back) {
            if (bytes_written.load() >= total) say("verifying", done, total);
            return;
        }
        if (ph != WritePhase::writing) return;
        bytes_written.store(done);
        // A delta counts bytes downloaded of those planned, until a server that ignores ranges
        // turned it into a whole download: image bytes written from then on.
        if (const uint64_t got = meter.done.load(); plan.delta && got <= plan.fetch && plan.fetch)
            say("downloading", got, plan.fetch);
        else
            say("writing", done, total);
        if (done * 2 >= total) failpoint("upgrade.half-written");
        std::lock_guard l(jm);
        if (done < next_journal) return;
        next_journal = done + kJournalEvery;
        j.bytes_done = done;
        if (auto st = save_journal(jpath, j); !st) spdlog::warn("journal: {}", st.error().what());
    };
    BALLAST_TRY(write_image(reader, m.image.size, m.image.sha256, part.path, part.start, part.size,
                            progress));
    j.bytes_done = m.image.size;
    return {};
}

}  // namespace

Result<UpgradeResult> upgrade(const UpgradeRequest& req, const UpgradeEnv& env,
                              const UpgradeProgress& progress) {
    const auto t0 = std::chrono::steady_clock::now();
    const UpgradeProgress say = [&](std::string_view phase, uint64_t done, uint64_t total) {
        if (progress) progress(phase, done, total);
    };
    if (!env.control) return fail(Errc::unavailable, "no Ballast disk: nothing to upgrade");
    if (!env.booted)
        return fail(Errc::unavailable,
                    "the booted slot is unknown (no ballast.slot= on the kernel command line); "
                    "refusing to pick a target");
    const boot::Slot booted = *env.booted, target = boot::other(booted);
    auto& control = *env.control;
    const auto lock = BALLAST_TRY(lock_upgrades(env.state_dir));

    // 1. Checks. Nothing is written until all have passed.
    say("checking", 0, 0);
    auto src = BALLAST_TRY(env.open ? env.open(req.source, env.source)
                                    : open_source(req.source, env.source));
    const auto& m = src.checked.manifest;
    BALLAST_TRY(check_bundle_fits(req, env, src.checked, target));
    auto state = BALLAST_TRY_CTX(control.load(), "boot control");
    if (auto already = BALLAST_TRY(check_boot_state(req, state, booted, m))) return *already;
    // A dry run writes nothing: not even the forgetting of a refused version that --force does.
    BALLAST_TRY(check_refused(env.state_dir, m, req.force && !req.dry_run));
    const auto jpath = journal_path(env.state_dir);
    auto previous = load_journal(jpath);
    if (!previous) spdlog::warn("{}", previous.error().what());
    const auto held = holdings(env, src.checked, booted, previous ? *previous : std::nullopt);
    if (req.dry_run) {
        UpgradeResult r;
        r.version = m.version;
        r.from_version = state.at(booted).version;
        r.where = req.source;
        r.target = target;
        r.bytes = m.image.size;
        r.plan = BALLAST_TRY_CTX(plan_download(src, held), "plan the download");
        r.downloaded = r.plan.fetch;
        r.dry_run = true;
        spdlog::info("dry run: {} to {} in slot {}: {}", r.from_version, m.version,
                     boot::name(target), describe(r.plan));
        return r;
    }
    failpoint("upgrade.checked");
    BALLAST_TRY(run_stage("before-upgrade", env));

    // 2. The target is unbootable before its first byte (I2); never the booted slot (I1).
    state = BALLAST_TRY(boot::begin_write(state, target, booted));
    BALLAST_TRY_CTX(control.save(state), "mark slot {} bad", boot::name(target));
    failpoint("upgrade.target-bad");

    // 3. The journal. From here on a failure is recorded in it.
    Journal j = new_journal(req, env, src.checked, state, booted);
    BALLAST_TRY_CTX(save_journal(jpath, j), "journal");
    failpoint("upgrade.journaled");
    auto failed = [&](Error e) -> std::unexpected<Error> {
        j.state = JobState::failed;
        j.error = fmt::format("upgrade to {}: {}", m.version, e.what());
        if (auto st = save_journal(jpath, j); !st) spdlog::error("journal: {}", st.error().what());
        return std::unexpected(std::move(e));
    };

    // The target's kept index goes before its first byte does.
    const auto kept = kept_index_path(env.state_dir, target);
    if (std::error_code ec; !std::filesystem::remove(kept, ec) && ec)
        return failed(fail_errno(ec.value(), "remove " + kept.string()).error());

    // 4-5. Plan the download, then stream, hash, header last, read back.
    auto plan = plan_download(src, held);
    if (!plan) return failed(std::move(plan.error()).context("plan the download"));
    spdlog::info("upgrade to {}: {}", m.version, describe(*plan));
    if (plan->delta && plan->fetch) say("downloading", 0, plan->fetch);
    auto reader = src.open_image();
    if (!reader) return failed(reader.error());
    if (auto st = write_target(*reader, m, env.slots.at(target), j, jpath, say, *plan, *src.meter);
        !st)
        return failed(
            std::move(st.error()).context(fmt::format("write slot {}", boot::name(target))));
    if (src.checked.index) keep_index(kept, *src.checked.index);

    // 6. Post-install hooks; a failure leaves the target bad.
    if (auto st = post_install_hooks(env); !st) return failed(st.error());
    failpoint("upgrade.post-install");

    // 7. Activate: one write (I3), then the journal.
    say("activating", m.image.size, m.image.size);
    state = BALLAST_TRY(control.load());
    auto active = boot::activate(state, target, env.tries, m.version, booted);
    if (!active) return failed(active.error());
    if (auto st = control.save(*active); !st)
        return failed(std::move(st.error()).context("activate"));
    failpoint("upgrade.activated");
    j.state = JobState::staged;
    BALLAST_TRY_CTX(save_journal(jpath, j), "journal");
    failpoint("upgrade.staged");

    UpgradeResult r;
    r.version = m.version;
    r.from_version = j.from_version;
    r.where = req.source;
    r.target = target;
    r.bytes = m.image.size;
    r.plan = *plan;
    r.downloaded = src.meter->done.load();
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

}  // namespace ballast::update
