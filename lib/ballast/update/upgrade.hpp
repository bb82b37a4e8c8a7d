// An A/B upgrade, in ../shared/specs/ab-update.md's order (steps 1-7; the reboot and the commit
// belong to the daemon and the health check):
//   1. check the bundle: signature, manifest, compatible, bootable, fits the slot, not refused,
//      the booted slot not on trial; the before-upgrade stage; nothing written yet
//   2. mark the target bad in boot control (one two-copy write)
//   3. journal: writing
//   4-5. stream + hash, header last, fsync, read back (update/writer.hpp)
//   6. post-install hooks: the after-upgrade stage (and the encryption issue's reseal)
//   7. activate with one boot-control write; journal: staged
// A failure point (core/failpoint.hpp) sits after each step for the crash tests.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "ballast/boot/control.hpp"
#include "ballast/core/root.hpp"
#include "ballast/update/journal.hpp"
#include "ballast/update/source.hpp"

namespace ballast::update {

struct UpgradeRequest {
    std::string source;  // bundle folder, .tar, or https:// URL of a .tar
    bool force = false;  // accept a version that failed here before
    bool reboot = true;  // recorded in the journal: a resumed upgrade keeps the caller's choice
    // Resuming an interrupted write: the bundle must still be the one the journal names.
    std::optional<std::string> expect_manifest_sha256;
    // Check the bundle and plan the download (how many bytes, from where), then stop: nothing
    // is written, no stage runs.
    bool dry_run = false;
};

struct UpgradeEnv {
    boot::BootControl* control = nullptr;  // null: no Ballast disk
    boot::SlotDevices slots;               // where each slot's image is written
    std::optional<boot::Slot> booted;
    std::filesystem::path state_dir;  // /var/lib/ballast, under the node root
    SourceOptions source;
    std::string compatible;  // this node's
    int tries = 3;
    // Runs the before-upgrade and after-upgrade stages (stages::run_or_fail on a node); a failure
    // stops the upgrade. Empty: no stages.
    std::function<Status(const std::string& stage)> run_stage;
    // Runs after the after-upgrade stage, before activation: the TPM2 keys for the new slot's
    // boot (crypt/slot_keys.hpp). A failure stops the upgrade with the target left bad.
    std::function<Status()> key_hook;
    // Opens the bundle; empty: update::open_source. Unit tests hand in a bundle from memory.
    std::function<Result<OpenedSource>(const std::string&, const SourceOptions&)> open;
};

struct UpgradeResult {
    std::string version, from_version, where;
    boot::Slot target = boot::Slot::B;
    uint64_t bytes = 0;
    // Bytes fetched over the network (for a dry run: to be fetched), 0 for a local bundle.
    uint64_t downloaded = 0;
    DownloadPlan plan;     // what the download was planned to be
    bool dry_run = false;  // planned only: nothing was written
    double seconds = 0;
    // The booted slot already runs this version: nothing was written (fleet jobs re-run after
    // the reboot they caused, and must then succeed without a second upgrade).
    bool already = false;
    [[nodiscard]] nlohmann::json to_json() const;
};

// phase: "checking", "downloading" (a delta: bytes fetched of those planned), "writing",
// "verifying", "activating"; done/total in bytes.
using UpgradeProgress = std::function<void(std::string_view phase, uint64_t done, uint64_t total)>;

[[nodiscard]] Result<UpgradeResult> upgrade(const UpgradeRequest& req, const UpgradeEnv& env,
                                            const UpgradeProgress& progress = {});

// Paths under the state folder.
[[nodiscard]] std::filesystem::path journal_path(const std::filesystem::path& state_dir);
[[nodiscard]] std::filesystem::path refused_path(const std::filesystem::path& state_dir);

// This node's compatible string: update.compatible from agent.yaml, else the image's
// /usr/lib/ballast/compatible (first line); empty when neither says.
[[nodiscard]] std::string node_compatible(const std::string& configured, const RootPrefix& root);

}  // namespace ballast::update
