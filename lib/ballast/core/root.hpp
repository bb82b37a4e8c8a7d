// The root prefix: every path Ballast touches on the node is written as the node sees it
// ("/etc/hostname") and mapped through a RootPrefix, so the same code can act on the running
// system ("/"), an image being built, or a test folder (--root DIR).
#pragma once

#include <fcntl.h>
#include <sys/types.h>

#include <filesystem>
#include <string>
#include <string_view>

#include "ballast/core/fd.hpp"
#include "ballast/core/result.hpp"

namespace ballast {

class RootPrefix {
  public:
    RootPrefix() : base_("/") {}
    // `base` must be absolute; it is normalised lexically.
    explicit RootPrefix(std::filesystem::path base);

    // Checks and normalises a node path: absolute, no ".." climbing above "/".
    [[nodiscard]] static Result<std::string> normalize(std::string_view node_path);

    [[nodiscard]] const std::filesystem::path& base() const noexcept { return base_; }
    [[nodiscard]] bool is_host_root() const noexcept { return base_ == "/"; }

    // Host path for a node path, lexically ("/etc/x" -> BASE/etc/x). Errors for relative paths
    // and ".." escapes. Symlinks inside the root are not followed here; use open_beneath()
    // before writing where a symlink in the image could point outside.
    [[nodiscard]] Result<std::filesystem::path> resolve(std::string_view node_path) const;

    // Same, for literal paths in our own code (absolute, no ".."); aborts on a bad one.
    [[nodiscard]] std::filesystem::path operator()(std::string_view node_path) const;

    // openat2(RESOLVE_IN_ROOT): opens a node path with every symlink and ".." resolved as if
    // BASE were "/", so nothing outside the root can be reached.
    [[nodiscard]] Result<UniqueFd> open_beneath(std::string_view node_path, int flags,
                                                mode_t mode = 0) const;

  private:
    std::filesystem::path base_;
};

}  // namespace ballast
