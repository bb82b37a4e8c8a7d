// files and directories: content, mode, ownership; append (Ballast extension) adds the content
// once, so that a second run changes nothing.
#include <sys/stat.h>

#include "ballast/core/files.hpp"
#include "ballast/stages/modules.hpp"

namespace ballast::stages::modules {

void files(const config::Step& s, StageContext& ctx, ModuleResult& r) {
    OwnerResolver owners(ctx.root);
    for (const auto& f : s.files) {
        auto owner = owners.resolve(f.owner, f.group);
        if (!owner) {
            r.error(f.path + ": " + owner.error().what());
            continue;
        }
        const mode_t mode = f.mode.value_or(0644);
        std::string content = f.content;
        if (f.append) {
            auto cur = read_beneath(ctx.root, f.path);
            if (!cur) {
                r.error(cur.error().what());
                continue;
            }
            const std::string existing = cur->value_or("");
            if (existing.find(f.content) == std::string::npos) {
                content = existing;
                if (!content.empty() && content.back() != '\n' && !f.content.empty())
                    content += '\n';
                content += f.content;
            } else {
                content = existing;
            }
        }
        auto changed = ensure_file(ctx.root, f.path, content, mode, owner->uid, owner->gid);
        if (!changed)
            r.error(changed.error().what());
        else if (*changed)
            r.change((f.append ? "appended to " : "wrote ") + f.path);
    }
}

void directories(const config::Step& s, StageContext& ctx, ModuleResult& r) {
    OwnerResolver owners(ctx.root);
    for (const auto& d : s.directories) {
        auto owner = owners.resolve(d.owner, d.group);
        if (!owner) {
            r.error(d.path + ": " + owner.error().what());
            continue;
        }
        const mode_t mode = d.mode.value_or(0755);
        auto st = stat_beneath(ctx.root, d.path);
        if (!st) {
            r.error(st.error().what());
            continue;
        }
        if (*st && !S_ISDIR((*st)->st_mode)) {
            r.error(d.path + ": exists and is not a directory");
            continue;
        }
        if (!*st) {
            auto made = mkdirs_beneath(ctx.root, d.path, mode, {owner->uid, owner->gid});
            if (r.check(made.has_value() ? Status{} : Status(std::unexpected(made.error()))))
                r.change("created " + d.path);
            continue;
        }
        const auto& cur = **st;
        bool mode_ok = !d.mode || (cur.st_mode & 07777) == mode;
        bool owner_ok = (!owner->uid || cur.st_uid == *owner->uid) &&
                        (!owner->gid || cur.st_gid == *owner->gid);
        if (mode_ok && owner_ok) continue;
        if (r.check(chmod_chown_beneath(ctx.root, d.path,
                                        d.mode ? std::optional<mode_t>(mode) : std::nullopt,
                                        {owner->uid, owner->gid})))
            r.change("set mode/owner of " + d.path);
    }
}

}  // namespace ballast::stages::modules
