// Secrets: random bytes from getrandom(), held in memory that is wiped when released and kept
// out of swap and core dumps.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "ballast/core/result.hpp"

namespace ballast {

class SecretBytes {
  public:
    SecretBytes() = default;
    explicit SecretBytes(size_t n);
    SecretBytes(const void* data, size_t n);
    SecretBytes(SecretBytes&& o) noexcept;
    SecretBytes& operator=(SecretBytes&& o) noexcept;
    SecretBytes(const SecretBytes&) = delete;
    SecretBytes& operator=(const SecretBytes&) = delete;
    ~SecretBytes();

    [[nodiscard]] uint8_t* data() noexcept { return data_; }
    [[nodiscard]] const uint8_t* data() const noexcept { return data_; }
    [[nodiscard]] size_t size() const noexcept { return size_; }
    [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
    [[nodiscard]] std::span<const uint8_t> span() const noexcept { return {data_, size_}; }

  private:
    void release() noexcept;
    uint8_t* data_ = nullptr;
    size_t size_ = 0;
};

// Fills `out` from the kernel CSPRNG (blocks only until the pool is initialised at early boot).
[[nodiscard]] Status fill_random(std::span<uint8_t> out);
[[nodiscard]] Result<SecretBytes> random_secret(size_t n);

}  // namespace ballast
