// TPM2 policy digests computed offline, so a sealed object's policy can be predicted for PCR values
// the TPM does not hold yet (an upgrade's next boot) and a token can be checked against the
// current values without trying to unseal; and the authValue a PIN becomes. Pure: no TPM, no files.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "ballast/core/result.hpp"
#include "ballast/crypt/pcr.hpp"

namespace ballast::crypt {

// TPM2_PolicyPCR: SHA256(old || TPM_CC_PolicyPCR || TPML_PCR_SELECTION || SHA256(values)).
// `values_ascending` holds the raw value of each PCR of `mask`, lowest PCR first. A count or a
// size that does not match, or a bit above PCR 23, is Errc::invalid_argument rather than a
// digest that binds to something else.
[[nodiscard]] Result<Digest> policy_pcr(const Digest& old, PcrBank bank, PcrMask mask,
                                        std::span<const std::string> values_ascending);
// TPM2_PolicyAuthValue: SHA256(old || TPM_CC_PolicyAuthValue).
[[nodiscard]] Result<Digest> policy_auth_value(const Digest& old);
// TPM2_PolicyAuthorize with an empty policyRef, as systemd 252 sends it: the digest is reset
// to SHA256(SHA256(0^32 || TPM_CC_PolicyAuthorize || key_name) || policyRef), whatever came
// before, so it comes first in a policy. `key_name` is the signing key's TPM name (pcr_key.hpp).
[[nodiscard]] Result<Digest> policy_authorize(std::string_view key_name);
// The digest systemd 252 seals to: from 32 zero bytes, PolicyAuthorize when the policy has a
// signing key (`signer_name`: its TPM name), PolicyPCR when `mask` is not empty, then
// PolicyAuthValue when there is a PIN. `values` as for policy_pcr (empty when `mask` is).
[[nodiscard]] Result<Digest> predict_policy(PcrBank bank, PcrMask mask,
                                            std::span<const std::string> values, bool pin,
                                            std::optional<std::string_view> signer_name = {});

// The sealed object's authValue for `pin` (32 raw bytes; a secret).
// Without salt (systemd 252, and what Ballast writes): SHA256(pin).
// With the token's tpm2_salt (systemd 253+): SHA256(base64(PBKDF2-HMAC-SHA256(pin, salt, 10000
// iterations, 32 bytes))), base64 standard with padding, as a 44-character string.
[[nodiscard]] Result<std::string> pin_auth_value(std::string_view pin,
                                                 std::optional<std::string_view> salt);

}  // namespace ballast::crypt
