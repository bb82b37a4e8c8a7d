#include "ballast/crypt/recovery_key.hpp"

#include <cctype>

#include "ballast/core/secret.hpp"
#include "ballast/core/text.hpp"

namespace ballast::crypt {
namespace {

constexpr std::string_view kModhex = "cbdefghijklnrtuv";
constexpr size_t kGroup = 8;
constexpr size_t kDigits = 2 * kRecoveryKeyBytes;

bool dash_position(size_t i) {
    return i % (kGroup + 1) == kGroup;
}

// Index in kModhex, or npos.
size_t modhex_value(char c) {
    return kModhex.find(char(std::tolower(static_cast<unsigned char>(c))));
}

auto not_a_key(std::string_view why) {
    return fail(Errc::invalid_argument,
                "not a recovery key: {} (expected 64 letters of cbdefghijklnrtuv, optionally in 8 "
                "groups of 8 joined by '-')",
                why);
}

}  // namespace

std::string format_recovery_key(std::span<const uint8_t, kRecoveryKeyBytes> key) {
    std::string out;
    out.reserve(kRecoveryKeyLength);
    for (uint8_t b : key) {
        if (dash_position(out.size())) out += '-';
        out += kModhex[b >> 4];
        out += kModhex[b & 15];
    }
    return out;
}

Result<std::string> make_recovery_key() {
    auto key = BALLAST_TRY(random_secret(kRecoveryKeyBytes));
    return format_recovery_key(std::span<const uint8_t, kRecoveryKeyBytes>(key.data(), key.size()));
}

Result<std::string> normalize_recovery_key(std::string_view typed) {
    auto text = trim(typed);
    bool dashed = text.size() == kRecoveryKeyLength;
    if (!dashed && text.size() != kDigits)
        return not_a_key(fmt::format("{} characters", text.size()));
    std::string out;
    out.reserve(kRecoveryKeyLength);
    for (size_t i = 0; i < text.size(); ++i) {
        if (dashed && dash_position(i)) {
            if (text[i] != '-') return not_a_key(fmt::format("no '-' at position {}", i + 1));
            continue;
        }
        size_t v = modhex_value(text[i]);
        if (v == std::string_view::npos)
            return not_a_key(fmt::format("character {} is not a modhex letter", i + 1));
        if (dash_position(out.size())) out += '-';
        out += kModhex[v];
    }
    return out;
}

}  // namespace ballast::crypt
