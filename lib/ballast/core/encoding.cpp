#include "ballast/core/encoding.hpp"

#include <zlib.h>

#include <cctype>

namespace ballast {

std::string base64_encode(std::string_view in) {
    static constexpr char tbl[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        uint32_t n = (uint32_t(uint8_t(in[i])) << 16) | (uint32_t(uint8_t(in[i + 1])) << 8) |
                     uint8_t(in[i + 2]);
        out += tbl[n >> 18];
        out += tbl[(n >> 12) & 63];
        out += tbl[(n >> 6) & 63];
        out += tbl[n & 63];
    }
    if (size_t rest = in.size() - i; rest > 0) {
        uint32_t n = uint32_t(uint8_t(in[i])) << 16;
        if (rest == 2) n |= uint32_t(uint8_t(in[i + 1])) << 8;
        out += tbl[n >> 18];
        out += tbl[(n >> 12) & 63];
        out += rest == 2 ? tbl[(n >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

Result<std::string> base64_decode(std::string_view in) {
    std::string out;
    uint32_t buf = 0;
    int bits = 0;
    size_t pos = 0;
    for (char c : in) {
        ++pos;
        int v;
        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= 'a' && c <= 'z')
            v = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            v = c - '0' + 52;
        else if (c == '+' || c == '-')
            v = 62;
        else if (c == '/' || c == '_')
            v = 63;
        else if (c == '=' || std::isspace(static_cast<unsigned char>(c)))
            continue;
        else
            return fail(Errc::parse, "invalid base64 character '{}' at offset {}", c, pos - 1);
        buf = (buf << 6) | uint32_t(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += char((buf >> bits) & 0xff);
        }
    }
    if (bits >= 6) return fail(Errc::parse, "invalid base64: truncated input");
    return out;
}

Result<std::string> gunzip(std::string_view in, size_t max_size) {
    z_stream zs{};
    // 15 + 32: accept gzip and zlib headers.
    if (inflateInit2(&zs, 15 + 32) != Z_OK) return fail(Errc::failed, "gunzip: inflateInit failed");
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    zs.avail_in = static_cast<uInt>(in.size());
    std::string out;
    char buf[16384];
    int rc;
    do {
        zs.next_out = reinterpret_cast<Bytef*>(buf);
        zs.avail_out = sizeof buf;
        rc = inflate(&zs, Z_NO_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END) {
            std::string msg = zs.msg ? zs.msg : "corrupt data";
            inflateEnd(&zs);
            return fail(Errc::parse, "gunzip: {}", msg);
        }
        out.append(buf, sizeof buf - zs.avail_out);
        if (out.size() > max_size) {
            inflateEnd(&zs);
            return fail(Errc::invalid_argument, "gunzip: output larger than {} bytes", max_size);
        }
        if (rc != Z_STREAM_END && zs.avail_in == 0 && zs.avail_out != 0) {
            inflateEnd(&zs);
            return fail(Errc::parse, "gunzip: truncated data");
        }
    } while (rc != Z_STREAM_END);
    inflateEnd(&zs);
    return out;
}

std::optional<std::string> from_hex(std::string_view hex) {
    auto nibble = [](char c) {
        c = char(std::tolower(static_cast<unsigned char>(c)));
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    };
    if (hex.size() % 2) return std::nullopt;
    std::string out(hex.size() / 2, '\0');
    for (size_t i = 0; i < out.size(); ++i) {
        const int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;
        out[i] = char(hi << 4 | lo);
    }
    return out;
}

std::string to_hex(std::span<const uint8_t> bytes) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size() * 2);
    for (auto b : bytes) {
        out += digits[b >> 4];
        out += digits[b & 15];
    }
    return out;
}

}  // namespace ballast
