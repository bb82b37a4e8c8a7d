// Small helpers shared by unit tests.
#pragma once

#include <filesystem>
#include <string>

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

}  // namespace ballast::test
