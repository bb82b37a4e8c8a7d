// Logging: spdlog everywhere (call spdlog::info(...) etc.). Under systemd (JOURNAL_STREAM names
// our stderr) records go to the journal with structured fields; otherwise to stderr.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "ballast/core/result.hpp"

namespace ballast::log {

enum class Target { automatic, stderr_text, journal };

[[nodiscard]] Result<spdlog::level::level_enum> parse_level(std::string_view name);
[[nodiscard]] std::string_view level_name(spdlog::level::level_enum lvl);
// syslog priority (0..7) for a level, as the journal's PRIORITY= wants it.
[[nodiscard]] int syslog_priority(spdlog::level::level_enum lvl);

// True when JOURNAL_STREAM ("dev:ino") names the file open on fd 2 (systemd's documented test).
[[nodiscard]] bool stderr_is_journal();

// Installs the default logger. `ident` becomes SYSLOG_IDENTIFIER.
void init(std::string_view ident, spdlog::level::level_enum lvl, Target target = Target::automatic);

// Extra journal fields for records logged by this thread while the scope lives
// (e.g. BALLAST_JOB=upgrade). Names must be upper-case journal field names.
class ScopedField {
  public:
    ScopedField(std::string name, std::string value);
    ~ScopedField();
    ScopedField(const ScopedField&) = delete;
    ScopedField& operator=(const ScopedField&) = delete;
};

// The journal fields one record becomes (pure; the sink sends them). Exposed for tests.
struct RecordInfo {
    std::string_view ident;
    spdlog::level::level_enum level;
    std::string_view message;
    std::string_view file;  // may be empty
    int line = 0;
    std::string_view func;
};
[[nodiscard]] std::vector<std::string> journal_fields(const RecordInfo& rec);

}  // namespace ballast::log
