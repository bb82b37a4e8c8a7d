#include "ballast/core/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "ballast/core/fd.hpp"

namespace ballast {
namespace {

Status write_all(int fd, std::string_view data, const std::string& what) {
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

// Removes the temporary file unless disarmed (it was renamed into place).
class TmpGuard {
  public:
    explicit TmpGuard(std::string path) : path_(std::move(path)) {}
    ~TmpGuard() {
        if (!path_.empty()) ::unlink(path_.c_str());
    }
    void disarm() { path_.clear(); }
    TmpGuard(const TmpGuard&) = delete;
    TmpGuard& operator=(const TmpGuard&) = delete;

  private:
    std::string path_;
};

}  // namespace

Status fsync_parent_dir(const std::filesystem::path& path) {
    auto dir = path.parent_path();
    if (dir.empty()) dir = ".";
    UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) return fail_errno(errno, dir.string());
    if (::fsync(fd.get()) < 0) return fail_errno(errno, "fsync " + dir.string());
    return {};
}

Status write_file_atomic(const std::filesystem::path& path, std::string_view data,
                         const AtomicWriteOptions& opts) {
    const std::string target = path.string();
    auto dir = path.parent_path();
    if (dir.empty()) dir = ".";
    std::string tmpl = (dir / ("." + path.filename().string() + ".XXXXXX")).string();
    UniqueFd fd(::mkostemp(tmpl.data(), O_CLOEXEC));
    if (!fd) return fail_errno(errno, "create temporary file in " + dir.string());
    TmpGuard guard(tmpl);

    BALLAST_TRY(write_all(fd.get(), data, tmpl));
    if (::fchmod(fd.get(), opts.mode) < 0) return fail_errno(errno, "chmod " + tmpl);
    if (opts.uid || opts.gid) {
        if (::fchown(fd.get(), opts.uid.value_or(static_cast<uid_t>(-1)),
                     opts.gid.value_or(static_cast<gid_t>(-1))) < 0)
            return fail_errno(errno, "chown " + tmpl);
    }
    if (::fsync(fd.get()) < 0) return fail_errno(errno, "fsync " + tmpl);
    if (::rename(tmpl.c_str(), target.c_str()) < 0) return fail_errno(errno, "rename to " + target);
    guard.disarm();
    return fsync_parent_dir(path);
}

Result<std::string> read_file(const std::filesystem::path& path, size_t max_size) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
    if (!fd) return fail_errno(errno, path.string());
    struct stat st {};
    if (::fstat(fd.get(), &st) < 0) return fail_errno(errno, path.string());
    if (S_ISDIR(st.st_mode))
        return fail(Errc::invalid_argument, "{}: is a directory", path.string());
    std::string out;
    char buf[16384];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            return fail_errno(errno, path.string());
        }
        if (n == 0) break;
        if (out.size() + static_cast<size_t>(n) > max_size)
            return fail(Errc::invalid_argument, "{}: larger than {} bytes", path.string(),
                        max_size);
        out.append(buf, static_cast<size_t>(n));
    }
    return out;
}

}  // namespace ballast
