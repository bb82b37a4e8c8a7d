#include "ballast/mount/assemble.hpp"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "ballast/core/fd.hpp"
#include "ballast/core/process.hpp"
#include "ballast/core/text.hpp"

namespace ballast::mount {

namespace fs = std::filesystem;

namespace {

Result<bool> is_mount_point(const fs::path& p) {
    struct statx st {};
    if (::statx(AT_FDCWD, p.c_str(), AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &st) != 0) {
        if (errno == ENOENT) return false;
        return fail_errno(errno, p.string());
    }
    return (st.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
           (st.stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

Status make_dirs(const fs::path& p) {
    std::error_code ec;
    fs::create_directories(p, ec);
    if (ec) return fail(errc_from_errno(ec.value()), "create {}: {}", p.string(), ec.message());
    return {};
}

Status do_mount(const Step& s) {
    const unsigned long flags =
        s.flags | (s.read_only ? MS_RDONLY : 0) | (s.kind == Step::Kind::bind ? MS_BIND : 0);
    const char* data = s.options.empty() ? nullptr : s.options.c_str();
    const char* type = s.kind == Step::Kind::bind ? nullptr : s.fstype.c_str();
    if (::mount(s.source.c_str(), s.target.c_str(), type, flags, data) != 0)
        return fail_errno(errno, fmt::format("mount {} on {}", s.source, s.target.string()));
    return {};
}

// No part of the target below the node's root may be a symlink: /lib -> usr/lib would make
// "/lib/firmware" a way around the /usr rule, /var/run -> /run would cover the initramfs's /run.
Status no_symlinks(const Step& s) {
    if (s.root.empty()) return {};
    fs::path at = s.root;
    for (const auto& part : s.target.lexically_relative(s.root)) {
        at /= part;
        struct stat st {};
        if (::lstat(at.c_str(), &st) != 0) {
            if (errno == ENOENT) return {};  // made below, as a folder
            return fail_errno(errno, at.string());
        }
        if (S_ISLNK(st.st_mode)) {
            std::error_code ec;
            const auto link = fs::read_symlink(at, ec);
            return fail(Errc::invalid_argument,
                        "{}: /{} is a symlink in the slot image (to {}): list the real path",
                        s.node_path, at.lexically_relative(s.root).string(), link.string());
        }
    }
    return {};
}

// The mount point: it exists in the image, or may be made under a writable overlay.
Status prepare_target(const Step& s) {
    std::error_code ec;
    if (fs::is_directory(s.target, ec)) return {};
    if (!s.create_target)
        return fail(Errc::not_found,
                    "{} is not a folder in the slot image, and the image is read-only: add it "
                    "to the image",
                    s.node_path);
    return make_dirs(s.target);
}

// Flushes a whole filesystem (the copy) and a folder entry (the rename).
Status sync_fs_of(const fs::path& p, bool whole_fs) {
    UniqueFd fd(::open(p.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) return fail_errno(errno, "open " + p.string());
    if ((whole_fs ? ::syncfs(fd.get()) : ::fsync(fd.get())) != 0)
        return fail_errno(errno, "sync " + p.string());
    return {};
}

// First boot of a persistent path: the image's content becomes its start. Copied in its own
// tree (.ballast/seeding), flushed, then renamed into place, so a power cut mid-copy leaves no
// half-seeded folder behind and no temporary name can be another path's folder.
Result<std::string> seed(const Step& s) {
    std::error_code ec;
    if (fs::exists(s.source, ec)) return std::string();
    const fs::path& tmp = s.seed_tmp;
    fs::remove_all(tmp, ec);
    if (ec) return fail(Errc::io, "remove the unfinished copy {}: {}", tmp.string(), ec.message());
    BALLAST_TRY(make_dirs(tmp));
    std::string detail = "first boot: created";
    struct stat st {};
    if (::stat(s.seed_from.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
        ProcessOptions cp;
        cp.argv = {"cp", "-a", "--", (s.seed_from / ".").string(), tmp.string()};
        auto r = BALLAST_TRY(run_process(cp));
        if (!r.success())
            return fail(Errc::io, "copy the image's {} to persistent storage: cp {}: {}",
                        s.node_path, r.describe(), trim(r.err));
        if (::chmod(tmp.c_str(), st.st_mode & 07777) != 0 ||
            ::chown(tmp.c_str(), st.st_uid, st.st_gid) != 0)
            return fail_errno(errno, "set the mode of " + tmp.string());
        detail = "first boot: seeded from the image";
    }
    BALLAST_TRY(sync_fs_of(tmp, true));
    BALLAST_TRY(make_dirs(fs::path(s.source).parent_path()));
    if (::rename(tmp.c_str(), s.source.c_str()) != 0)
        return fail_errno(errno, "rename " + tmp.string());
    BALLAST_TRY(sync_fs_of(fs::path(s.source).parent_path(), false));
    return detail;
}

// e2fsck -p: what it may fix without asking. Exit 4 and up (errors left) or a crash: the
// filesystem is not mounted read-write, so nothing makes the damage worse.
Result<std::string> check_fs(const Step& s) {
    ProcessOptions o;
    o.argv = {"e2fsck", "-p", s.source};
    auto r = run_process(o);
    if (!r) return "e2fsck not run: " + r.error().what();
    if (r->signal == 0 && r->exit_code < 4)
        return r->exit_code == 0 ? ""
                                 : fmt::format("e2fsck -p fixed errors (exit {})", r->exit_code);
    return fail(Errc::io, "e2fsck -p {}: {}; not mounted (repair it by hand: e2fsck {}): {}",
                s.source, r->describe(), s.source, trim(r->err));
}

Status run_step(const Step& s, Outcome& out) {
    if (!s.blocked.empty()) return fail(Errc::unavailable, "{}", s.blocked);
    BALLAST_TRY(no_symlinks(s));
    switch (s.kind) {
        case Step::Kind::device: {
            std::error_code ec;
            if (!fs::exists(s.source, ec))
                return fail(Errc::not_found, "{} does not exist", s.source);
            if (!s.read_only) out.detail = BALLAST_TRY(check_fs(s));
            break;
        }
        case Step::Kind::overlay:
            BALLAST_TRY(make_dirs(s.upper));
            BALLAST_TRY(make_dirs(s.work));
            break;
        case Step::Kind::bind:
            out.detail = BALLAST_TRY(seed(s));
            break;
        case Step::Kind::tmpfs:
            break;
    }
    BALLAST_TRY(prepare_target(s));
    return do_mount(s);
}

}  // namespace

bool Report::ok() const {
    return persistent && std::none_of(steps.begin(), steps.end(), [](const Outcome& o) {
               return o.state == Outcome::State::failed;
           });
}

std::vector<std::string> Report::errors() const {
    std::vector<std::string> out;
    for (const auto& o : steps)
        if (o.state == Outcome::State::failed) out.push_back(o.step.node_path + ": " + o.detail);
    return out;
}

nlohmann::json Report::to_json() const {
    nlohmann::json steps_j = nlohmann::json::array();
    static constexpr const char* states[] = {"done", "skipped", "failed"};
    for (const auto& o : steps) {
        auto j = o.step.to_json();
        j["state"] = states[size_t(o.state)];
        if (!o.detail.empty()) j["detail"] = o.detail;
        steps_j.push_back(std::move(j));
    }
    return {{"ok", ok()}, {"persistent", persistent}, {"steps", std::move(steps_j)}};
}

Status assemble(const std::vector<Step>& steps, Step::Phase phase, Report& rep) {
    bool first = true;
    for (const Step& s : steps) {
        if (s.phase != phase) continue;
        const bool persistent_step = first && phase == Step::Phase::storage;
        first = false;
        if (persistent_step && BALLAST_TRY(is_mount_point(s.target)))
            return fail(Errc::busy, "{} is mounted already: the root was assembled in this boot",
                        s.target.string());
        Outcome& out = rep.steps.emplace_back(Outcome{s});
        std::error_code ec;
        if (s.optional && !fs::exists(s.source, ec)) {
            out.state = Outcome::State::skipped;
            out.detail = s.source + " does not exist";
            spdlog::info("mount: {}: skipped, {}", s.node_path, out.detail);
            continue;
        }
        auto st = run_step(s, out);
        if (st) {
            if (persistent_step) rep.persistent = true;
            spdlog::info("mount: {}{}", s.describe(), out.detail.empty() ? "" : "; " + out.detail);
            continue;
        }
        out.state = Outcome::State::failed;
        out.detail = out.detail.empty() ? st.error().what() : out.detail + "; " + st.error().what();
        spdlog::error("mount: {}: {}", s.node_path, out.detail);
        if (persistent_step) {
            // Without persistent storage the node still boots, on RAM, and says so.
            Step ram{.kind = Step::Kind::tmpfs,
                     .node_path = s.node_path,
                     .target = s.target,
                     .source = "tmpfs",
                     .fstype = "tmpfs",
                     .options = "mode=0755"};
            if (auto r = do_mount(ram); !r)
                spdlog::error("mount: tmpfs in place of persistent storage: {}", r.error().what());
            out.detail += "; this boot keeps its state in RAM (lost at reboot)";
        }
    }
    return {};
}

}  // namespace ballast::mount
