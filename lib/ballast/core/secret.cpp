#include "ballast/core/secret.hpp"

#include <sys/mman.h>
#include <sys/random.h>

#include <cerrno>
#include <cstring>
#include <new>
#include <utility>

namespace ballast {

SecretBytes::SecretBytes(size_t n) : data_(n ? new uint8_t[n]() : nullptr), size_(n) {
    if (data_) {
        // Best effort: mlock can fail under RLIMIT_MEMLOCK; the wipe on release still happens.
        (void)::mlock(data_, size_);
        (void)::madvise(data_, size_, MADV_DONTDUMP);
    }
}

SecretBytes::SecretBytes(const void* data, size_t n) : SecretBytes(n) {
    if (n) std::memcpy(data_, data, n);
}

SecretBytes::SecretBytes(SecretBytes&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}

SecretBytes& SecretBytes::operator=(SecretBytes&& o) noexcept {
    if (this != &o) {
        release();
        data_ = std::exchange(o.data_, nullptr);
        size_ = std::exchange(o.size_, 0);
    }
    return *this;
}

SecretBytes::~SecretBytes() {
    release();
}

void SecretBytes::release() noexcept {
    if (!data_) return;
    ::explicit_bzero(data_, size_);
    (void)::munlock(data_, size_);
    delete[] data_;
    data_ = nullptr;
    size_ = 0;
}

Status fill_random(std::span<uint8_t> out) {
    size_t done = 0;
    while (done < out.size()) {
        ssize_t n = ::getrandom(out.data() + done, out.size() - done, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return fail_errno(errno, "getrandom");
        }
        done += static_cast<size_t>(n);
    }
    return {};
}

Result<SecretBytes> random_secret(size_t n) {
    SecretBytes s(n);
    BALLAST_TRY(fill_random(std::span<uint8_t>(s.data(), s.size())));
    return s;
}

}  // namespace ballast
