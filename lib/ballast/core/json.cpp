#include "ballast/core/json.hpp"

namespace ballast {
namespace {

// The code point of the UTF-8 sequence at s[i] (its length in `len`), or -1 when the bytes
// there are not the shortest encoding of a code point.
long decode_one(std::string_view s, size_t i, size_t& len) {
    const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char b0 = byte(i);
    len = 1;
    if (b0 < 0x80) return b0;
    long cp;
    long min;
    if ((b0 & 0xE0) == 0xC0) {
        len = 2, cp = b0 & 0x1F, min = 0x80;
    } else if ((b0 & 0xF0) == 0xE0) {
        len = 3, cp = b0 & 0x0F, min = 0x800;
    } else if ((b0 & 0xF8) == 0xF0) {
        len = 4, cp = b0 & 0x07, min = 0x10000;
    } else {
        len = 1;
        return -1;
    }
    if (i + len > s.size()) {
        len = 1;
        return -1;
    }
    for (size_t k = 1; k < len; ++k) {
        if ((byte(i + k) & 0xC0) != 0x80) {
            len = 1;
            return -1;
        }
        cp = (cp << 6) | (byte(i + k) & 0x3F);
    }
    if (cp < min) {  // overlong
        len = 1;
        return -1;
    }
    return cp;
}

// As systemd's unichar_is_valid(), plus NUL, which a C string cannot carry.
bool bus_acceptable(long cp) {
    return cp > 0 && cp < 0x110000 && (cp & 0xFFFFF800) != 0xD800 &&
           !(cp >= 0xFDD0 && cp <= 0xFDEF) && (cp & 0xFFFE) != 0xFFFE;
}

}  // namespace

std::string valid_utf8(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
        size_t len = 1;
        const long cp = decode_one(s, i, len);
        if (bus_acceptable(cp))
            out.append(s.substr(i, len));
        else
            out += "\xEF\xBF\xBD";
        i += len;
    }
    return out;
}

}  // namespace ballast
