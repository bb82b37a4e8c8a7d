// PCR banks and masks as systemd spells them (policy digests: policy.hpp).
// Pure: no TPM, no files.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ballast/core/result.hpp"

namespace ballast::crypt {

enum class PcrBank { sha1, sha256, sha384, sha512 };
inline constexpr std::array kPcrBanks{PcrBank::sha1, PcrBank::sha256, PcrBank::sha384,
                                      PcrBank::sha512};

[[nodiscard]] std::string_view to_string(PcrBank bank) noexcept;
// "sha256"; any case, like systemd's tpm2_hash_alg_from_string.
[[nodiscard]] Result<PcrBank> parse_pcr_bank(std::string_view name);
// TPM_ALG_ID of the bank's hash (TPM 2.0 part 2, table 9).
[[nodiscard]] uint16_t tpm_alg_id(PcrBank bank) noexcept;
// Size of one PCR value in the bank, in bytes.
[[nodiscard]] size_t digest_size(PcrBank bank) noexcept;

// Bit i = PCR i. PCRs are 0-23; parse_pcr_list and the token parser never set bits 24-31,
// format_pcr_list and pcr_indices ignore them, the policy functions refuse them.
using PcrMask = uint32_t;
inline constexpr int kPcrCount = 24;
inline constexpr PcrMask kAllPcrs = (PcrMask{1} << kPcrCount) - 1;

// "7", "7,14", "7+14" (the crypttab spelling, where ',' separates options), "" → no PCRs.
[[nodiscard]] Result<PcrMask> parse_pcr_list(std::string_view text);
// "7,14"; "" for no PCRs.
[[nodiscard]] std::string format_pcr_list(PcrMask mask);
// Ascending.
[[nodiscard]] std::vector<int> pcr_indices(PcrMask mask);

// A policy digest. The policy session is always SHA-256 (systemd's and Ballast's), whatever the
// bank of the PCRs it binds to.
using Digest = std::array<uint8_t, 32>;

}  // namespace ballast::crypt
