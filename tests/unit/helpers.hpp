// Small helpers shared by unit tests.
#pragma once

#include <filesystem>
#include <map>
#include <string>

#include "ballast/health/checks.hpp"

namespace ballast::test {

// A fresh directory under $TMPDIR, removed with everything in it at scope exit.
class TempDir {
  public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    [[nodiscard]] const std::filesystem::path& path() const { return path_; }
    [[nodiscard]] std::filesystem::path operator/(const std::string& rel) const {
        return path_ / rel;
    }

  private:
    std::filesystem::path path_;
};

void write_text(const std::filesystem::path& p, const std::string& text);
[[nodiscard]] std::string read_text(const std::filesystem::path& p);
[[nodiscard]] inline bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

// Units in these states for the health checks; any other unit is not loaded.
[[nodiscard]] inline health::UnitState unit_states(std::map<std::string, std::string> states) {
    return [states](const std::string& unit) -> Result<std::string> {
        auto it = states.find(unit);
        if (it == states.end()) return fail(Errc::not_found, "unit {} is not loaded", unit);
        return it->second;
    };
}

}  // namespace ballast::test
