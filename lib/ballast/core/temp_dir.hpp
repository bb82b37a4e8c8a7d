// A scratch folder (under /tmp unless told), removed with everything in it on every path out.
#pragma once

#include <string>
#include <string_view>

#include "ballast/core/result.hpp"

namespace ballast {

class TempDir {
  public:
    // `base`/ballast-`what`-XXXXXX
    [[nodiscard]] static Result<TempDir> make(std::string_view what,
                                              std::string_view base = "/tmp");
    TempDir(TempDir&& o) noexcept;
    TempDir& operator=(TempDir&&) = delete;
    ~TempDir();
    [[nodiscard]] const std::string& path() const { return path_; }

  private:
    explicit TempDir(std::string p) : path_(std::move(p)) {}
    std::string path_;
};

}  // namespace ballast
