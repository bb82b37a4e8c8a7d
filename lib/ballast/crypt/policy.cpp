#include "ballast/crypt/policy.hpp"

#include <climits>
#include <cstring>

#include "ballast/core/bytes.hpp"
#include "ballast/core/encoding.hpp"
#include "ballast/core/openssl.hpp"
#include "ballast/core/sha256.hpp"

namespace ballast::crypt {
namespace {

// TPM 2.0 part 2, table 12 (TPM_CC).
constexpr uint32_t kCcPolicyAuthorize = 0x0000016A;
constexpr uint32_t kCcPolicyAuthValue = 0x0000016B;
constexpr uint32_t kCcPolicyPcr = 0x0000017F;

// systemd's PBKDF2_HMAC_SHA256_ITERATIONS (src/shared/tpm2-util.c, v253+).
constexpr int kPinPbkdf2Iterations = 10000;

std::string_view bytes(const Digest& d) {
    return {reinterpret_cast<const char*>(d.data()), d.size()};
}

// Exactly one selection in `bank` with 3 bitmap bytes (24 PCRs, LSB of the first byte = PCR 0),
// as systemd and tpm2-tools send it: the digest covers the selection bytes as sent.
std::string pcr_selection_bytes(PcrBank bank, PcrMask mask) {
    std::string out;
    put_be<uint32_t>(out, 1);
    put_be<uint16_t>(out, tpm_alg_id(bank));
    out += char(3);
    for (int byte = 0; byte < 3; ++byte)
        out += char((mask >> (8 * byte)) & 0xff);
    return out;
}

Status require(bool ok, const char* what) {
    if (!ok) return fail(Errc::invalid_argument, "{}", what);
    return {};
}

Result<std::array<uint8_t, 32>> pbkdf2_sha256(std::string_view pin, std::string_view salt) {
    BALLAST_TRY(require(pin.size() <= INT_MAX && salt.size() <= INT_MAX,
                        "pin_auth_value: input too large"));
    const auto& a = *BALLAST_TRY(ossl::api());
    std::array<uint8_t, 32> key{};
    if (a.PKCS5_PBKDF2_HMAC(pin.data(), int(pin.size()),
                            reinterpret_cast<const unsigned char*>(salt.data()), int(salt.size()),
                            kPinPbkdf2Iterations, a.EVP_sha256(), int(key.size()), key.data()) != 1)
        return fail(Errc::failed, "PBKDF2-HMAC-SHA256: {}", ossl::errors(a));
    return key;
}

std::string as_string(const std::array<uint8_t, 32>& d) {
    return std::string(bytes(d));
}

}  // namespace

Result<Digest> policy_pcr(const Digest& old, PcrBank bank, PcrMask mask,
                          std::span<const std::string> values_ascending) {
    BALLAST_TRY(require((mask & ~kAllPcrs) == 0, "policy_pcr: PCR mask has bits above PCR 23"));
    BALLAST_TRY(require(values_ascending.size() == size_t(std::popcount(mask)),
                        "policy_pcr: one value per selected PCR is needed"));
    auto values = BALLAST_TRY(Sha256::make());
    for (const auto& v : values_ascending) {
        BALLAST_TRY(require(v.size() == digest_size(bank),
                            "policy_pcr: PCR value size does not match bank"));
        values.update(v);
    }
    auto pcr_digest = values.digest();
    std::string command;
    put_be<uint32_t>(command, kCcPolicyPcr);
    command += pcr_selection_bytes(bank, mask);
    auto h = BALLAST_TRY(Sha256::make());
    h.update(bytes(old));
    h.update(command);
    h.update(bytes(pcr_digest));
    return h.digest();
}

Result<Digest> policy_auth_value(const Digest& old) {
    std::string command;
    put_be<uint32_t>(command, kCcPolicyAuthValue);
    auto h = BALLAST_TRY(Sha256::make());
    h.update(bytes(old));
    h.update(command);
    return h.digest();
}

Result<Digest> policy_authorize(std::string_view key_name) {
    BALLAST_TRY(require(key_name.size() == 34 && key_name[0] == 0 && key_name[1] == 0x0B,
                        "policy_authorize: the key name is not a SHA-256 TPM name"));
    Digest zero{};
    std::string command;
    put_be<uint32_t>(command, kCcPolicyAuthorize);
    auto h = BALLAST_TRY(Sha256::make());
    h.update(bytes(zero));
    h.update(command);
    h.update(key_name);
    auto first = h.digest();
    // Then the policyRef, empty here: the second hash still runs.
    auto h2 = BALLAST_TRY(Sha256::make());
    h2.update(bytes(first));
    return h2.digest();
}

Result<Digest> predict_policy(PcrBank bank, PcrMask mask, std::span<const std::string> values,
                              bool pin, std::optional<std::string_view> signer_name) {
    Digest d{};
    if (signer_name) d = BALLAST_TRY(policy_authorize(*signer_name));
    // PolicyPCR with an empty selection would still change the digest; systemd skips it.
    if (mask != 0)
        d = BALLAST_TRY(policy_pcr(d, bank, mask, values));
    else
        BALLAST_TRY(require(values.empty(), "predict_policy: PCR values given without PCRs"));
    if (pin) d = BALLAST_TRY(policy_auth_value(d));
    return d;
}

// Checked against systemd's sources: tpm2_util_pbkdf2_hmac_sha256 in src/shared/tpm2-util.c is
// RFC 8018 PBKDF2 with HMAC-SHA256, one 32-byte block, 10000 iterations; acquire_tpm2_key in
// src/cryptsetup/cryptsetup-tpm2.c (and enroll_tpm2 in src/cryptenroll/cryptenroll-tpm2.c)
// replace the PIN with base64mem() of that key (standard alphabet, '=' padding, no newline) when
// the token has a salt, and tpm2_seal/tpm2_unseal then set the authValue to SHA256 of the PIN
// string they are given (hash_pin).
Result<std::string> pin_auth_value(std::string_view pin, std::optional<std::string_view> salt) {
    if (!salt) return as_string(BALLAST_TRY(sha256_digest(pin)));
    auto key = BALLAST_TRY(pbkdf2_sha256(pin, *salt));
    auto encoded = base64_encode(bytes(key));
    auto digest = sha256_digest(encoded);
    ::explicit_bzero(key.data(), key.size());
    ::explicit_bzero(encoded.data(), encoded.size());
    return as_string(BALLAST_TRY(std::move(digest)));
}

}  // namespace ballast::crypt
