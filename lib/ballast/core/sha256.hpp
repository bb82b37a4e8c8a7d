// Streaming SHA-256 (OpenSSL EVP).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "ballast/core/result.hpp"

namespace ballast {

class Sha256 {
  public:
    // Errc::unsupported naming the package when libcrypto.so.3 cannot be loaded.
    [[nodiscard]] static Result<Sha256> make();
    ~Sha256();
    Sha256(Sha256&&) noexcept;
    Sha256& operator=(Sha256&&) noexcept;
    void update(std::span<const uint8_t> data);
    void update(std::string_view data) {
        update(
            std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(data.data()), data.size()));
    }
    // The 32 raw bytes; the object is finished afterwards.
    [[nodiscard]] std::array<uint8_t, 32> digest();
    // Lower-case hex; the object is finished afterwards.
    [[nodiscard]] std::string hex();

  private:
    struct Impl;
    explicit Sha256(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

[[nodiscard]] Result<std::string> sha256_hex(std::string_view data);
[[nodiscard]] Result<std::array<uint8_t, 32>> sha256_digest(std::string_view data);

}  // namespace ballast
