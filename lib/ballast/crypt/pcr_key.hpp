// The RSA key a signed PCR policy is bound to (systemd-cryptenroll 252's --tpm2-public-key, a
// UKI's .pcrpkey), as the TPM and the signature file see it: the TPMT_PUBLIC that
// TPM2_LoadExternal gets, its name (which PolicyAuthorize binds), and the fingerprint
// tpm2-pcr-signature.json names the key by. Pure apart from libcrypto: no TPM, no files.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "ballast/core/result.hpp"
#include "ballast/crypt/pcr.hpp"
#include "ballast/crypt/pcr_signature.hpp"

namespace ballast::crypt {

struct PcrPublicKey {
    std::string pem;      // as given: the token keeps these bytes (tpm2_pubkey)
    std::string modulus;  // big-endian, no leading zero byte
    uint32_t exponent = 0;
    Digest fingerprint{};  // SHA-256 of the PKCS#1 RSAPublicKey DER: the signature's "pkfp"
};

// How the exponent goes into the TPMT_PUBLIC. systemd 252 writes it as it is (65537); systemd
// 254 and later write 0, the TPM's spelling of the default 65537. The two give different names,
// hence different policies: Ballast seals as 252 does and unseals either.
enum class ExponentForm { literal, default_zero };

// An RSA public key in PEM ("BEGIN PUBLIC KEY"); anything else is Errc::parse (a file that is
// not PEM) or Errc::unsupported (another key type: systemd 252 takes only RSA).
// `what` names the input in errors.
[[nodiscard]] Result<PcrPublicKey> parse_pcr_public_key(std::string_view pem,
                                                        std::string_view what);

// The marshalled TPMT_PUBLIC systemd loads: RSA, nameAlg SHA-256, DECRYPT|SIGN_ENCRYPT|
// USERWITHAUTH, no symmetric algorithm, no scheme, keyBits from the modulus.
[[nodiscard]] std::string tpmt_public(const PcrPublicKey& key, ExponentForm form);
// The TPM's name of that object: TPM_ALG_SHA256 (000B) || SHA256(tpmt_public).
[[nodiscard]] Result<std::string> tpm_name(const PcrPublicKey& key, ExponentForm form);

// What systemd-measure sign writes for one set of PCR values: the PolicyPCR digest of `values`
// (raw, ascending, one per PCR of `pcrs`) from 32 zero bytes, signed RSASSA-PKCS1-v1_5/SHA-256
// with the RSA private key in `private_key_pem` (`what` names it in errors), and the fingerprint
// of its public half. No TPM is needed, unlike systemd-measure 252.
[[nodiscard]] Result<PcrSignature> sign_pcr_policy(std::string_view private_key_pem,
                                                   std::string_view what, PcrBank bank,
                                                   PcrMask pcrs,
                                                   std::span<const std::string> values);

// Whether `sig` is `key`'s RSASSA-PKCS1-v1_5/SHA-256 signature of its policy digest, checked
// here as the TPM will check it at boot (TPM2_VerifySignature). False for another key's entry.
[[nodiscard]] Result<bool> verify_pcr_signature(const PcrPublicKey& key, const PcrSignature& sig);

}  // namespace ballast::crypt
