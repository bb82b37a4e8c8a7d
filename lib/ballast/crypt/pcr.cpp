#include "ballast/crypt/pcr.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>

#include "ballast/core/text.hpp"

namespace ballast::crypt {
namespace {

Result<int> parse_pcr_index(std::string_view item) {
    auto text = trim(item);
    if (text.empty()) return fail(Errc::invalid_argument, "empty item");
    unsigned n = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (ec != std::errc() || end != text.data() + text.size() || n >= kPcrCount)
        return fail(Errc::invalid_argument, "'{}' is not a PCR (0-{})", text, kPcrCount - 1);
    return int(n);
}

}  // namespace

std::string_view to_string(PcrBank bank) noexcept {
    switch (bank) {
        case PcrBank::sha1:
            return "sha1";
        case PcrBank::sha256:
            return "sha256";
        case PcrBank::sha384:
            return "sha384";
        case PcrBank::sha512:
            return "sha512";
    }
    return "?";
}

Result<PcrBank> parse_pcr_bank(std::string_view name) {
    auto same = [](char a, char b) {
        return std::tolower(static_cast<unsigned char>(a)) == static_cast<unsigned char>(b);
    };
    for (auto bank : kPcrBanks)
        if (std::ranges::equal(name, to_string(bank), same)) return bank;
    return fail(Errc::invalid_argument,
                "'{}' is not a PCR bank (expected sha1, sha256, sha384 or sha512)", name);
}

uint16_t tpm_alg_id(PcrBank bank) noexcept {
    switch (bank) {
        case PcrBank::sha1:
            return 0x0004;
        case PcrBank::sha256:
            return 0x000B;
        case PcrBank::sha384:
            return 0x000C;
        case PcrBank::sha512:
            return 0x000D;
    }
    return 0;
}

size_t digest_size(PcrBank bank) noexcept {
    switch (bank) {
        case PcrBank::sha1:
            return 20;
        case PcrBank::sha256:
            return 32;
        case PcrBank::sha384:
            return 48;
        case PcrBank::sha512:
            return 64;
    }
    return 0;
}

Result<PcrMask> parse_pcr_list(std::string_view text) {
    PcrMask mask = 0;
    if (trim(text).empty()) return mask;
    for (auto rest = text;;) {
        auto sep = rest.find_first_of(",+");
        auto index = BALLAST_TRY_CTX(parse_pcr_index(rest.substr(0, sep)), "PCR list '{}'", text);
        mask |= PcrMask{1} << index;
        if (sep == std::string_view::npos) return mask;
        rest.remove_prefix(sep + 1);
    }
}

std::string format_pcr_list(PcrMask mask) {
    std::string out;
    for (int i : pcr_indices(mask)) {
        if (!out.empty()) out += ',';
        out += std::to_string(i);
    }
    return out;
}

std::vector<int> pcr_indices(PcrMask mask) {
    std::vector<int> out;
    for (int i = 0; i < kPcrCount; ++i)
        if (mask & (PcrMask{1} << i)) out.push_back(i);
    return out;
}

}  // namespace ballast::crypt
