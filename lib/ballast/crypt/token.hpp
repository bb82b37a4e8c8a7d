// The LUKS2 tokens systemd-cryptenroll writes and systemd-cryptsetup reads: "systemd-tpm2"
// (tpm2_make_luks2_json / tpm2_parse_luks2_json in systemd's src/shared/tpm2-util.c) and
// "systemd-recovery". Ballast writes exactly systemd 252's field set, so 252 and every later
// version unlock what it enrolls, and reads what 252-256 write. Pure: JSON text in and out.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "ballast/core/result.hpp"
#include "ballast/crypt/pcr.hpp"

namespace ballast::crypt {

enum class PrimaryAlg { ecc, rsa };

[[nodiscard]] std::string_view to_string(PrimaryAlg alg) noexcept;
// "ecc" or "rsa", any case, like systemd's tpm2_asym_alg_from_string.
[[nodiscard]] Result<PrimaryAlg> parse_primary_alg(std::string_view name);

inline constexpr std::string_view kTpm2TokenType = "systemd-tpm2";
inline constexpr std::string_view kRecoveryTokenType = "systemd-recovery";
// LUKS2 has keyslots 0-31.
inline constexpr int kMaxKeyslots = 32;

struct Tpm2Token {
    int keyslot = -1;
    std::string blob;  // raw bytes: marshalled TPM2B_PRIVATE || TPM2B_PUBLIC
    PcrMask pcrs = 0;
    std::optional<PcrBank> bank;  // absent: systemd < 250 wrote none (SHA-256 then)
    PrimaryAlg primary_alg = PrimaryAlg::ecc;
    Digest policy_hash{};
    bool pin = false;
    std::optional<std::string> srk;   // raw, from tpm2_srk (systemd 254+)
    std::optional<std::string> salt;  // raw, tpm2_salt (systemd 253+): the PIN is salted
    // A signed PCR policy (systemd 252+): the PEM text of the RSA key (tpm2_pubkey) whose
    // signatures over PCR values the TPM accepts for `pubkey_pcrs` (tpm2_pubkey_pcrs).
    std::optional<std::string> pubkey;
    PcrMask pubkey_pcrs = 0;
};

// The token as systemd 252 writes it, compact and in its field order: type, keyslots, tpm2-blob,
// tpm2-pcrs, tpm2-pcr-bank (sha256 when `bank` is absent), tpm2-primary-alg, tpm2-policy-hash,
// tpm2-pin, then tpm2_pubkey_pcrs and tpm2_pubkey for a signed policy. A token 252 could not
// unlock (salt or srk set), an empty blob, a key without PCRs (or PCRs without a key) or a
// keyslot outside 0-31 is Errc::invalid_argument.
[[nodiscard]] Result<std::string> tpm2_token_json(const Tpm2Token& token);

// Strict: every field is checked and errors name it ("tpm2-pcrs: 24 is not a PCR (0-23)").
// Errc::parse for a malformed token; Errc::unsupported for what newer systemd writes and Ballast
// cannot unlock (pcrlock, Argon2id PINs, several shards, unknown fields), since guessing at such
// a token could spend a PIN try against the TPM's lockout counter. A tpm2-blob or
// tpm2-policy-hash given as an array of exactly one shard (systemd 257+) is read like the string.
[[nodiscard]] Result<Tpm2Token> parse_tpm2_token(std::string_view json);

// {"type":"systemd-recovery","keyslots":["N"]}; a keyslot outside 0-31 is Errc::invalid_argument.
[[nodiscard]] Result<std::string> recovery_token_json(int keyslot);

// The "type" of any LUKS2 token.
[[nodiscard]] Result<std::string> token_type(std::string_view json);
// The keyslot a token opens. systemd's rule (cryptsetup_get_keyslot_from_token in
// src/shared/cryptsetup-util.c): "keyslots" is an array of exactly one decimal string.
[[nodiscard]] Result<int> token_keyslot(std::string_view json);

}  // namespace ballast::crypt
