#include "ballast/update/image_files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <chrono>

#include "ballast/core/fd.hpp"
#include "ballast/core/process.hpp"
#include "ballast/core/root.hpp"

namespace ballast::update {

Result<std::string> resolve_in_root(const std::string& root, const std::string& path) {
    auto fd = BALLAST_TRY_CTX(RootPrefix(root).open_beneath(path, O_PATH), "{} in the image", path);
    struct stat st {};
    if (::fstat(fd.get(), &st) < 0) return fail_errno(errno, path);
    if (!S_ISREG(st.st_mode))
        return fail(Errc::invalid_argument, "{} in the image is not a regular file", path);
    std::array<char, 4096> buf{};
    const auto link = fmt::format("/proc/self/fd/{}", fd.get());
    const ssize_t n = ::readlink(link.c_str(), buf.data(), buf.size());
    if (n < 0) return fail_errno(errno, link);
    if (size_t(n) == buf.size())
        return fail(Errc::invalid_argument, "{} in the image: its path here is too long", path);
    return std::string(buf.data(), size_t(n));
}

Result<ImageBootFiles> extract_boot_files(const std::string& image, const std::string& fstype,
                                          const std::string& dir) {
    ProcessOptions p;
    if (fstype == "squashfs")
        // Names that are not in the image are skipped, not errors: resolution below says which.
        p.argv = {
            "unsquashfs", "-no-xattrs", "-quiet",         "-no-progress",      "-f", "-d", dir,
            image,        "boot",       "etc/os-release", "usr/lib/os-release"};
    else if (fstype == "erofs")
        p.argv = {"fsck.erofs", "--extract=" + dir, "--no-preserve", "--overwrite", image};
    else
        return fail(Errc::invalid_argument, "{}: no boot files in a {} image", image, fstype);
    p.timeout = std::chrono::minutes(10);
    BALLAST_TRY(run_checked(p, fmt::format("extract the boot files of {}", image)));
    // A squashfs link out of /boot (to /usr/lib/modules/...) leads to nothing extracted.
    auto found = [&](const char* path, const char* option) -> Result<std::string> {
        auto r = resolve_in_root(dir, path);
        if (!r && fstype == "squashfs")
            return fail(Errc::invalid_argument,
                        "{}: {} is not a file within the image's /boot (a link leading "
                        "elsewhere?): give it with {}",
                        image, path, option);
        return r;
    };
    ImageBootFiles f{found("/boot/vmlinuz", "--linux"), found("/boot/initrd.img", "--initrd"),
                     resolve_in_root(dir, "/etc/os-release")};
    if (!f.os_release) f.os_release = resolve_in_root(dir, "/usr/lib/os-release");
    if (!f.os_release)
        f.os_release = fail(Errc::invalid_argument,
                            "{}: neither /etc/os-release nor /usr/lib/os-release is a file in the "
                            "image: give it with --os-release",
                            image);
    return f;
}

}  // namespace ballast::update
