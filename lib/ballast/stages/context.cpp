#include "ballast/stages/context.hpp"

#include "ballast/core/process.hpp"
#include "ballast/system/accounts.hpp"

namespace ballast::stages {

struct OwnerResolver::Cache {
    accounts::Database db;
};

OwnerResolver::OwnerResolver(const RootPrefix& root) : root_(root) {}
OwnerResolver::~OwnerResolver() = default;

Result<ResolvedOwner> OwnerResolver::resolve(const config::OwnerRef& owner,
                                             const config::OwnerRef& group) {
    ResolvedOwner r;
    if (owner.id) r.uid = *owner.id;
    if (group.id) r.gid = *group.id;
    if (owner.name.empty() && group.name.empty()) return r;
    if (!cache_) cache_.reset(new Cache{BALLAST_TRY(accounts::Database::load(root_, false))});
    const auto& db = cache_->db;
    if (!owner.name.empty()) {
        r.uid = db.uid_of(owner.name);
        if (!r.uid) return fail(Errc::not_found, "no user '{}' on the node", owner.name);
        // "owner: user" without a group: the user's primary group, as chown user: does.
        if (!group.set()) {
            r.gid = db.primary_gid_of(owner.name);
            if (!r.gid)
                return fail(Errc::parse, "user '{}': /etc/passwd has no valid primary group id",
                            owner.name);
        }
    }
    if (!group.name.empty()) {
        r.gid = db.gid_of(group.name);
        if (!r.gid) return fail(Errc::not_found, "no group '{}' on the node", group.name);
    }
    return r;
}

Result<ProcessResult> run_argv(const StageContext& ctx, std::vector<std::string> argv,
                               const ShellOptions& opts) {
    ProcessOptions p;
    if (ctx.root.is_host_root()) {
        p.argv = std::move(argv);
    } else {
        p.argv = {"chroot", ctx.root.base().string()};
        p.argv.insert(p.argv.end(), argv.begin(), argv.end());
    }
    p.cwd = "/";
    p.env = opts.env;
    p.timeout = opts.timeout;
    if (ctx.on_output) {
        p.on_line = [&ctx, id = opts.step_id](std::string_view line, bool is_err) {
            ctx.on_output(id, line, is_err);
        };
    }
    return run_process(p);
}

Result<ProcessResult> run_shell(const StageContext& ctx, const std::string& script,
                                const ShellOptions& opts) {
    return run_argv(ctx, {"/bin/sh", "-c", script}, opts);
}

}  // namespace ballast::stages
