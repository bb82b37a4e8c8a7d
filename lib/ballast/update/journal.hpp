// The upgrade journal (/var/lib/ballast/upgrade.json) and the refused versions
// (/var/lib/ballast/refused.json): what the agent must know across crashes and reboots to resume
// a write, to see that a new slot failed to come up, and not to try that version again.
// Each file is rewritten whole and atomically (tmp, fsync, rename, fsync dir).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ballast/boot/slot.hpp"
#include "ballast/core/result.hpp"

namespace ballast::update {

enum class JobState { writing, staged, committed, failed };
[[nodiscard]] std::string_view name(JobState s);

struct Journal {
    JobState state = JobState::writing;
    boot::Slot target = boot::Slot::B;
    boot::Slot from = boot::Slot::A;  // the slot booted when the upgrade ran
    std::string source;               // as given (a path or an https:// URL)
    std::string version, from_version;
    std::string manifest_sha256;  // names the bundle: a resumed write must match it
    int tries = 3;                // tries the target was activated with
    bool force = false;
    bool reboot = true;  // reboot into the target when staged (false: --no-reboot)
    uint64_t bytes_done = 0;
    std::string started, updated;  // ISO 8601 UTC
    std::string error;             // why it failed (state failed)

    [[nodiscard]] nlohmann::json to_json() const;
};

// Strict: a journal that does not parse is reported, never guessed at.
[[nodiscard]] Result<Journal> parse_journal(std::string_view text, const std::string& where);
[[nodiscard]] Result<std::optional<Journal>> load_journal(const std::filesystem::path& path);
// Stamps `updated` and writes atomically.
[[nodiscard]] Status save_journal(const std::filesystem::path& path, Journal j);

struct Refused {
    std::string version, reason, at;
};
[[nodiscard]] Result<std::vector<Refused>> load_refused(const std::filesystem::path& path);
// Adds or replaces the entry for `r.version`.
[[nodiscard]] Status add_refused(const std::filesystem::path& path, Refused r);
// Drops `version` (an operator forced it).
[[nodiscard]] Status remove_refused(const std::filesystem::path& path, const std::string& version);

}  // namespace ballast::update
