#include <sys/stat.h>

#include "ballast/core/files.hpp"
#include "ballast/stages/modules.hpp"

namespace ballast::stages::modules {

Result<bool> ensure_file(const RootPrefix& root, const std::string& path,
                         const std::string& content, mode_t mode, std::optional<uid_t> uid,
                         std::optional<gid_t> gid) {
    auto st = BALLAST_TRY(stat_beneath(root, path));
    if (st && S_ISDIR(st->st_mode)) return fail(Errc::invalid_argument, "{}: is a directory", path);
    if (st && S_ISREG(st->st_mode)) {
        auto cur = BALLAST_TRY(read_beneath(root, path));
        bool same_content = cur && *cur == content;
        bool same_mode = (st->st_mode & 07777) == mode;
        bool same_owner = (!uid || st->st_uid == *uid) && (!gid || st->st_gid == *gid);
        if (same_content && same_mode && same_owner) return false;
        if (same_content) {
            BALLAST_TRY(chmod_chown_beneath(root, path, mode, {uid, gid}));
            return true;
        }
    } else {
        auto [parent, base] = split_node_path(path);
        BALLAST_TRY(mkdirs_beneath(root, parent, 0755));
    }
    BALLAST_TRY(write_beneath(root, path, content, mode, {uid, gid}));
    return true;
}

}  // namespace ballast::stages::modules
