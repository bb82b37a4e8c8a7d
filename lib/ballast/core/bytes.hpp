// Little-endian integers in on-disk formats (chunk indexes, squashfs, FAT and UDF) and big-endian
// ones in TPM structures: read from and appended to byte strings without caring about the host's
// byte order or alignment.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ballast {

// The N-byte little-endian unsigned integer at `off` (the caller has checked the bounds).
template <class T>
[[nodiscard]] constexpr T get_le(std::string_view b, size_t off) noexcept {
    T v = 0;
    for (size_t i = sizeof(T); i-- > 0;)
        v = T(v << 8) | T(uint8_t(b[off + i]));
    return v;
}
[[nodiscard]] constexpr uint16_t le16(std::string_view b, size_t off) noexcept {
    return get_le<uint16_t>(b, off);
}
[[nodiscard]] constexpr uint32_t le32(std::string_view b, size_t off) noexcept {
    return get_le<uint32_t>(b, off);
}
[[nodiscard]] constexpr uint64_t le64(std::string_view b, size_t off) noexcept {
    return get_le<uint64_t>(b, off);
}

template <class T>
void put_le(std::string& out, T v) {
    for (size_t i = 0; i < sizeof(T); ++i)
        out.push_back(char((v >> (8 * i)) & 0xff));
}

template <class T>
void put_be(std::string& out, T v) {
    for (size_t i = sizeof(T); i-- > 0;)
        out.push_back(char((v >> (8 * i)) & 0xff));
}

}  // namespace ballast
