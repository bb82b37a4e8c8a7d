// File operations on node paths beneath a RootPrefix. Every path is resolved with
// openat2(RESOLVE_IN_ROOT), so symlinks in an image or a config cannot lead outside the root,
// and every replacement is atomic (temporary file, fsync, rename, fsync directory).
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ballast/core/fd.hpp"
#include "ballast/core/result.hpp"
#include "ballast/core/root.hpp"

namespace ballast {

struct Ownership {
    std::optional<uid_t> uid;
    std::optional<gid_t> gid;
};

// Content of a regular file, or nullopt when it does not exist.
[[nodiscard]] Result<std::optional<std::string>> read_beneath(const RootPrefix& root,
                                                              std::string_view path,
                                                              size_t max_size = 64u << 20);

// lstat()-like: nullopt when the path does not exist.
[[nodiscard]] Result<std::optional<struct stat>> stat_beneath(const RootPrefix& root,
                                                              std::string_view path);

// Creates missing directories down to `path` with `mode` and ownership (existing ones are left
// as they are). Returns the node paths it created.
[[nodiscard]] Result<std::vector<std::string>> mkdirs_beneath(const RootPrefix& root,
                                                              std::string_view path, mode_t mode,
                                                              const Ownership& own = {});

// Replaces `path` atomically with `data`, mode and ownership. The parent must exist.
[[nodiscard]] Status write_beneath(const RootPrefix& root, std::string_view path,
                                   std::string_view data, mode_t mode, const Ownership& own = {});

// Writes a new version of a file in pieces (downloads), then replaces it atomically on commit();
// dropped without commit() the temporary file is removed and the old file is untouched.
class BeneathWriter {
  public:
    [[nodiscard]] static Result<BeneathWriter> open(const RootPrefix& root, std::string_view path);
    BeneathWriter(BeneathWriter&&) noexcept = default;
    BeneathWriter& operator=(BeneathWriter&&) noexcept = default;
    ~BeneathWriter();
    [[nodiscard]] Status write(std::string_view data);
    [[nodiscard]] Status commit(mode_t mode, const Ownership& own = {});

  private:
    BeneathWriter() = default;
    std::string path_, name_, tmp_;
    UniqueFd dir_, fd_;
};

// Sets mode and ownership of an existing path (not following a final symlink for chown).
[[nodiscard]] Status chmod_chown_beneath(const RootPrefix& root, std::string_view path,
                                         std::optional<mode_t> mode, const Ownership& own);

// Removes a file or an empty directory; a missing path is not an error. Returns whether it
// existed.
[[nodiscard]] Result<bool> remove_beneath(const RootPrefix& root, std::string_view path);

// Creates or replaces a symlink at `path` pointing to `target` (target is stored as given).
[[nodiscard]] Status symlink_beneath(const RootPrefix& root, std::string_view path,
                                     std::string_view target);
[[nodiscard]] Result<std::optional<std::string>> readlink_beneath(const RootPrefix& root,
                                                                  std::string_view path);

// Parent directory and last component of a normalised node path ("/a/b" -> "/a", "b").
[[nodiscard]] std::pair<std::string, std::string> split_node_path(std::string_view path);

}  // namespace ballast
