#include "ballast/core/files.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "ballast/core/fd.hpp"
#include "ballast/core/secret.hpp"

namespace ballast {
namespace {

Status write_all(int fd, std::string_view data, std::string_view what) {
    while (!data.empty()) {
        ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            return fail_errno(errno, what);
        }
        data.remove_prefix(static_cast<size_t>(n));
    }
    return {};
}

Result<UniqueFd> open_parent(const RootPrefix& root, std::string_view path, std::string& name) {
    auto norm = BALLAST_TRY(RootPrefix::normalize(path));
    if (norm == "/") return fail(Errc::invalid_argument, "{}: is the root itself", path);
    auto [parent, base] = split_node_path(norm);
    name = base;
    return root.open_beneath(parent, O_PATH | O_DIRECTORY);
}

std::string tmp_name(const std::string& base) {
    uint8_t r[6];
    (void)fill_random(r);
    std::string s = "." + base + ".";
    for (auto b : r)
        s += "0123456789abcdef"[b & 15];
    return s + ".tmp";
}

}  // namespace

std::pair<std::string, std::string> split_node_path(std::string_view path) {
    auto slash = path.rfind('/');
    std::string parent(path.substr(0, slash));
    return {parent.empty() ? "/" : parent, std::string(path.substr(slash + 1))};
}

Result<std::optional<std::string>> read_beneath(const RootPrefix& root, std::string_view path,
                                                size_t max_size) {
    auto fd = root.open_beneath(path, O_RDONLY | O_NOCTTY);
    if (!fd) {
        if (fd.error().sys_errno() == ENOENT) return std::optional<std::string>();
        return std::unexpected(std::move(fd.error()));
    }
    struct stat st {};
    if (::fstat(fd->get(), &st) < 0) return fail_errno(errno, path);
    if (!S_ISREG(st.st_mode)) return fail(Errc::invalid_argument, "{}: not a regular file", path);
    std::string out;
    char buf[16384];
    for (;;) {
        ssize_t n = ::read(fd->get(), buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            return fail_errno(errno, path);
        }
        if (n == 0) break;
        if (out.size() + size_t(n) > max_size)
            return fail(Errc::invalid_argument, "{}: larger than {} bytes", path, max_size);
        out.append(buf, size_t(n));
    }
    return std::optional<std::string>(std::move(out));
}

Result<std::optional<struct stat>> stat_beneath(const RootPrefix& root, std::string_view path) {
    auto fd = root.open_beneath(path, O_PATH | O_NOFOLLOW);
    if (!fd) {
        if (fd.error().sys_errno() == ENOENT) return std::optional<struct stat>();
        return std::unexpected(std::move(fd.error()));
    }
    struct stat st {};
    if (::fstat(fd->get(), &st) < 0) return fail_errno(errno, path);
    return std::optional<struct stat>(st);
}

Result<std::vector<std::string>> mkdirs_beneath(const RootPrefix& root, std::string_view path,
                                                mode_t mode, const Ownership& own) {
    auto norm = BALLAST_TRY(RootPrefix::normalize(path));
    std::vector<std::string> created;
    // Usually the whole path exists: one lookup instead of one per component.
    if (auto whole = root.open_beneath(norm, O_PATH | O_DIRECTORY)) return created;
    std::string cur;
    size_t i = 1;
    while (i <= norm.size()) {
        size_t j = norm.find('/', i);
        if (j == std::string::npos) j = norm.size();
        std::string parent = cur.empty() ? "/" : cur;
        std::string name = norm.substr(i, j - i);
        cur += "/" + name;
        i = j + 1;
        if (name.empty()) continue;
        auto dir = BALLAST_TRY(root.open_beneath(parent, O_PATH | O_DIRECTORY));
        if (::mkdirat(dir.get(), name.c_str(), mode) == 0) {
            UniqueFd made(
                ::openat(dir.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
            if (!made) return fail_errno(errno, cur);
            // mkdir applies the umask; the mode asked for is the mode wanted.
            if (::fchmod(made.get(), mode) < 0) return fail_errno(errno, "chmod " + cur);
            if ((own.uid || own.gid) &&
                ::fchown(made.get(), own.uid.value_or(uid_t(-1)), own.gid.value_or(gid_t(-1))) < 0)
                return fail_errno(errno, "chown " + cur);
            created.push_back(cur);
        } else if (errno != EEXIST) {
            return fail_errno(errno, "mkdir " + cur);
        } else {
            // Must be a directory (possibly through a symlink, which open_beneath resolves).
            auto check = root.open_beneath(cur, O_PATH | O_DIRECTORY);
            if (!check)
                return fail(Errc::invalid_argument, "{}: exists and is not a directory", cur);
        }
    }
    if (!created.empty()) {
        auto [p, b] = split_node_path(created.front());
        auto dir = BALLAST_TRY(root.open_beneath(p, O_RDONLY | O_DIRECTORY));
        if (::fsync(dir.get()) < 0) return fail_errno(errno, "fsync " + p);
    }
    return created;
}

Status write_beneath(const RootPrefix& root, std::string_view path, std::string_view data,
                     mode_t mode, const Ownership& own) {
    std::string name;
    auto dir = BALLAST_TRY(open_parent(root, path, name));
    // O_PATH fds cannot be used for openat(O_CREAT): reopen the directory for real.
    UniqueFd d(::openat(dir.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!d) return fail_errno(errno, path);
    const std::string tmp = tmp_name(name);
    UniqueFd fd(
        ::openat(d.get(), tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) return fail_errno(errno, path);
    auto cleanup = [&] { ::unlinkat(d.get(), tmp.c_str(), 0); };
    auto st = write_all(fd.get(), data, path);
    if (st && ::fchmod(fd.get(), mode) < 0) st = fail_errno(errno, fmt::format("chmod {}", path));
    if (st && (own.uid || own.gid) &&
        ::fchown(fd.get(), own.uid.value_or(uid_t(-1)), own.gid.value_or(gid_t(-1))) < 0)
        st = fail_errno(errno, fmt::format("chown {}", path));
    if (st && ::fsync(fd.get()) < 0) st = fail_errno(errno, fmt::format("fsync {}", path));
    if (st && ::renameat(d.get(), tmp.c_str(), d.get(), name.c_str()) < 0)
        st = fail_errno(errno, fmt::format("rename {}", path));
    if (!st) {
        cleanup();
        return st;
    }
    if (::fsync(d.get()) < 0) return fail_errno(errno, fmt::format("fsync directory of {}", path));
    return {};
}

Result<BeneathWriter> BeneathWriter::open(const RootPrefix& root, std::string_view path) {
    BeneathWriter w;
    w.path_ = std::string(path);
    auto dir = BALLAST_TRY(open_parent(root, path, w.name_));
    w.dir_.reset(::openat(dir.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!w.dir_) return fail_errno(errno, path);
    w.tmp_ = tmp_name(w.name_);
    w.fd_.reset(::openat(w.dir_.get(), w.tmp_.c_str(),
                         O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!w.fd_) return fail_errno(errno, path);
    return w;
}

BeneathWriter::~BeneathWriter() {
    if (fd_ && dir_) ::unlinkat(dir_.get(), tmp_.c_str(), 0);
}

Status BeneathWriter::write(std::string_view data) {
    return write_all(fd_.get(), data, path_);
}

Status BeneathWriter::commit(mode_t mode, const Ownership& own) {
    if (::fchmod(fd_.get(), mode) < 0) return fail_errno(errno, fmt::format("chmod {}", path_));
    if ((own.uid || own.gid) &&
        ::fchown(fd_.get(), own.uid.value_or(uid_t(-1)), own.gid.value_or(gid_t(-1))) < 0)
        return fail_errno(errno, fmt::format("chown {}", path_));
    if (::fsync(fd_.get()) < 0) return fail_errno(errno, fmt::format("fsync {}", path_));
    if (::renameat(dir_.get(), tmp_.c_str(), dir_.get(), name_.c_str()) < 0)
        return fail_errno(errno, fmt::format("rename {}", path_));
    fd_.reset();
    if (::fsync(dir_.get()) < 0)
        return fail_errno(errno, fmt::format("fsync directory of {}", path_));
    return {};
}

Status chmod_chown_beneath(const RootPrefix& root, std::string_view path,
                           std::optional<mode_t> mode, const Ownership& own) {
    auto fd = BALLAST_TRY(root.open_beneath(path, O_PATH | O_NOFOLLOW));
    struct stat st {};
    if (::fstat(fd.get(), &st) < 0) return fail_errno(errno, path);
    if (S_ISLNK(st.st_mode)) return fail(Errc::invalid_argument, "{}: is a symlink", path);
    // fchmod/fchown need a real fd; /proc/self/fd re-opens the O_PATH one without a path lookup.
    UniqueFd real(::open(fmt::format("/proc/self/fd/{}", fd.get()).c_str(),
                         O_RDONLY | O_CLOEXEC | O_NONBLOCK));
    if (!real) return fail_errno(errno, path);
    if (mode && ::fchmod(real.get(), *mode) < 0)
        return fail_errno(errno, fmt::format("chmod {}", path));
    if ((own.uid || own.gid) &&
        ::fchown(real.get(), own.uid.value_or(uid_t(-1)), own.gid.value_or(gid_t(-1))) < 0)
        return fail_errno(errno, fmt::format("chown {}", path));
    return {};
}

Result<bool> remove_beneath(const RootPrefix& root, std::string_view path) {
    std::string name;
    auto dir = open_parent(root, path, name);
    if (!dir) {
        if (dir.error().sys_errno() == ENOENT) return false;
        return std::unexpected(std::move(dir.error()));
    }
    UniqueFd d(::openat(dir->get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!d) return fail_errno(errno, path);
    if (::unlinkat(d.get(), name.c_str(), 0) == 0 ||
        (errno == EISDIR && ::unlinkat(d.get(), name.c_str(), AT_REMOVEDIR) == 0)) {
        if (::fsync(d.get()) < 0) return fail_errno(errno, path);
        return true;
    }
    if (errno == ENOENT) return false;
    return fail_errno(errno, fmt::format("remove {}", path));
}

Status symlink_beneath(const RootPrefix& root, std::string_view path, std::string_view target) {
    std::string name;
    auto dir = BALLAST_TRY(open_parent(root, path, name));
    UniqueFd d(::openat(dir.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!d) return fail_errno(errno, path);
    const std::string tmp = tmp_name(name);
    if (::symlinkat(std::string(target).c_str(), d.get(), tmp.c_str()) < 0)
        return fail_errno(errno, fmt::format("symlink {}", path));
    if (::renameat(d.get(), tmp.c_str(), d.get(), name.c_str()) < 0) {
        int e = errno;
        ::unlinkat(d.get(), tmp.c_str(), 0);
        return fail_errno(e, fmt::format("rename {}", path));
    }
    if (::fsync(d.get()) < 0) return fail_errno(errno, path);
    return {};
}

Result<std::optional<std::string>> readlink_beneath(const RootPrefix& root, std::string_view path) {
    std::string name;
    auto dir = open_parent(root, path, name);
    if (!dir) {
        if (dir.error().sys_errno() == ENOENT) return std::optional<std::string>();
        return std::unexpected(std::move(dir.error()));
    }
    char buf[4096];
    ssize_t n = ::readlinkat(dir->get(), name.c_str(), buf, sizeof buf - 1);
    if (n < 0) {
        if (errno == ENOENT || errno == EINVAL) return std::optional<std::string>();
        return fail_errno(errno, path);
    }
    return std::optional<std::string>(std::string(buf, size_t(n)));
}

}  // namespace ballast
