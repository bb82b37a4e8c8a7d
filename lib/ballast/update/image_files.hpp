// Files read out of a slot image (squashfs or erofs) on the build host: the kernel, initrd and
// os-release a release's UKI is built from, so that the UKI boots the very kernel whose modules
// the image carries.
#pragma once

#include <string>

#include "ballast/core/result.hpp"

namespace ballast::update {

// The files of a release's UKI, found in an image extracted under a scratch folder: each its
// path there, or why it is not there (an error only for the files the caller needs).
struct ImageBootFiles {
    Result<std::string> linux_image, initrd, os_release;
};

// Extracts /boot and the os-release files of `image` (`fstype` "squashfs" or "erofs"; erofs is
// extracted whole: erofs-utils 1.5 extracts nothing less) into `dir`, and resolves /boot/vmlinuz,
// /boot/initrd.img and /etc/os-release (else /usr/lib/os-release) inside it, symlinks followed
// as the image's root would (absolute targets stay inside the image). A file missing, or a link
// leading out of what was extracted, is that file's error, naming it.
[[nodiscard]] Result<ImageBootFiles> extract_boot_files(const std::string& image,
                                                        const std::string& fstype,
                                                        const std::string& dir);

// `path` (absolute, as inside the image) resolved under `root` with every symlink kept inside
// it (RootPrefix::open_beneath): the path of the regular file on this machine.
[[nodiscard]] Result<std::string> resolve_in_root(const std::string& root, const std::string& path);

}  // namespace ballast::update
