#include "ballast/disk/discover.hpp"

#include <blkid/blkid.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <memory>

namespace ballast::disk {

Result<std::string> find_disk_by_partlabel(const std::string& partlabel) {
    std::unique_ptr<char, decltype(&std::free)> part(
        blkid_evaluate_tag("PARTLABEL", partlabel.c_str(), nullptr), &std::free);
    if (!part) return fail(Errc::not_found, "no partition labelled {}", partlabel);
    struct stat st {};
    if (::stat(part.get(), &st) < 0) return fail_errno(errno, part.get());
    char name[256];
    dev_t whole = 0;
    if (blkid_devno_to_wholedisk(st.st_rdev, name, sizeof name, &whole) < 0)
        return fail(Errc::not_found, "{}: cannot find the disk it belongs to", part.get());
    return std::string("/dev/") + name;
}

}  // namespace ballast::disk
