#include "ballast/core/copy.hpp"

#include <unistd.h>

#include <vector>

namespace ballast {

Status copy_bytes(int in, uint64_t offset, uint64_t size, int out, const std::string& what,
                  const std::function<void(std::span<const uint8_t>)>& tap) {
    std::vector<uint8_t> buf(4u << 20);
    uint64_t done = 0;
    while (done < size) {
        const size_t n = size_t(std::min<uint64_t>(buf.size(), size - done));
        const ssize_t r = ::pread(in, buf.data(), n, off_t(offset + done));
        if (r < 0) return fail_errno(errno, what);
        if (r == 0)
            return fail(Errc::io, "{}: the source ended after {} of {} bytes", what, done, size);
        if (tap) tap(std::span<const uint8_t>(buf.data(), size_t(r)));
        size_t w = 0;
        while (w < size_t(r)) {
            const ssize_t x = ::write(out, buf.data() + w, size_t(r) - w);
            if (x < 0) return fail_errno(errno, what);
            w += size_t(x);
        }
        done += uint64_t(r);
    }
    return {};
}

}  // namespace ballast
