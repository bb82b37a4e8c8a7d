#include "ballast/core/root.hpp"
#include "ballast/core/text.hpp"

#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <vector>

namespace ballast {

RootPrefix::RootPrefix(std::filesystem::path base) : base_(base.lexically_normal()) {
    auto s = base_.string();
    while (s.size() > 1 && s.back() == '/')
        s.pop_back();
    base_ = s.empty() ? std::filesystem::path("/") : std::filesystem::path(s);
}

Result<std::string> RootPrefix::normalize(std::string_view node_path) {
    if (!is_absolute_path(node_path))
        return fail(Errc::invalid_argument, "{}: not an absolute path", node_path);
    if (node_path.find('\0') != std::string_view::npos)
        return fail(Errc::invalid_argument, "path contains a NUL byte");
    std::vector<std::string_view> parts;
    size_t i = 0;
    while (i < node_path.size()) {
        size_t j = node_path.find('/', i);
        if (j == std::string_view::npos) j = node_path.size();
        auto part = node_path.substr(i, j - i);
        if (part == "..") {
            if (parts.empty())
                return fail(Errc::invalid_argument, "{}: climbs above the root", node_path);
            parts.pop_back();
        } else if (!part.empty() && part != ".") {
            parts.push_back(part);
        }
        i = j + 1;
    }
    std::string out;
    for (auto p : parts) {
        out += '/';
        out += p;
    }
    return out.empty() ? std::string("/") : out;
}

Result<std::filesystem::path> RootPrefix::resolve(std::string_view node_path) const {
    auto norm = BALLAST_TRY(normalize(node_path));
    if (is_host_root()) return std::filesystem::path(norm);
    if (norm == "/") return base_;
    return std::filesystem::path(base_.string() + norm);
}

std::filesystem::path RootPrefix::operator()(std::string_view node_path) const {
    auto r = resolve(node_path);
    // Only for literal paths written in our own code: a bad one is a programming error.
    if (!r) std::abort();
    return *r;
}

Result<UniqueFd> RootPrefix::open_beneath(std::string_view node_path, int flags,
                                          mode_t mode) const {
    auto norm = BALLAST_TRY(normalize(node_path));
    UniqueFd root(::open(base_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!root) return fail_errno(errno, base_.string());
    open_how how{};
    how.flags = static_cast<__u64>(flags | O_CLOEXEC);
    how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    std::string rel = norm == "/" ? "." : norm.substr(1);
    int fd;
    do {
        fd = static_cast<int>(::syscall(SYS_openat2, root.get(), rel.c_str(), &how, sizeof how));
    } while (fd < 0 && errno == EAGAIN);
    // systemd's seccomp filters (RestrictSUIDSGID=, SystemCallFilter=) answer openat2 with ENOSYS:
    // it cannot inspect the mode inside struct open_how. On the host root there is nothing to
    // stay beneath, so a plain open resolves the same; an image root has no safe fallback.
    if (fd < 0 && errno == ENOSYS && is_host_root())
        fd = ::open(norm.c_str(), flags | O_CLOEXEC, how.mode);
    if (fd < 0 && errno == ENOSYS)
        return fail(Errc::unsupported,
                    "{}: openat2() is not allowed here (a seccomp filter?); it is needed to stay "
                    "inside {}",
                    node_path, base_.string());
    if (fd < 0) return fail_errno(errno, node_path);
    return UniqueFd(fd);
}

}  // namespace ballast
