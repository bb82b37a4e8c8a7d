#include "ballast/core/temp_dir.hpp"

#include <stdlib.h>

#include <cerrno>
#include <filesystem>
#include <utility>

namespace ballast {

Result<TempDir> TempDir::make(std::string_view what, std::string_view base) {
    std::string t = fmt::format("{}/ballast-{}-XXXXXX", base, what);
    if (!::mkdtemp(t.data())) return fail_errno(errno, "mkdtemp");
    return TempDir(std::move(t));
}

TempDir::TempDir(TempDir&& o) noexcept : path_(std::exchange(o.path_, "")) {}

TempDir::~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
}

}  // namespace ballast
