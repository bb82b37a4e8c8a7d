// tpm2-pcr-signature.json, the signed PCR policies systemd-measure writes and systemd-stub
// hands to the initrd (/.extra/, then /run/systemd/): per bank, entries of the PCRs they cover,
// the signing key's fingerprint, the PolicyPCR digest that was signed and the signature
// ({"sha256":[{"pcrs":[11],"pkfp":"<hex>","pol":"<hex>","sig":"<base64>"}]}).
// Pure: JSON text in and out.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ballast/core/result.hpp"
#include "ballast/crypt/pcr.hpp"

namespace ballast::crypt {

inline constexpr size_t kMaxPcrSignatureFile = 1u << 20;

struct PcrSignature {
    PcrBank bank = PcrBank::sha256;
    PcrMask pcrs = 0;
    Digest key_fingerprint{};  // "pkfp": SHA-256 of the key's PKCS#1 DER
    Digest policy{};           // "pol": TPM2_PolicyPCR digest from 32 zero bytes
    std::string signature;     // "sig": RSASSA-PKCS1-v1_5 with SHA-256 over the 32 bytes of pol
};

// Every entry of the banks systemd knows (sha1, sha256, sha384, sha512); other keys are passed
// over, as systemd does. A malformed entry is Errc::parse naming it ("WHAT: sha256[1].pol: ...").
// At most 1 MiB and 4096 entries.
[[nodiscard]] Result<std::vector<PcrSignature>> parse_pcr_signatures(std::string_view json,
                                                                     std::string_view what);

// The entry systemd's find_signature() would pick: same bank, same PCRs, same key, same policy.
[[nodiscard]] const PcrSignature* find_pcr_signature(std::span<const PcrSignature> all,
                                                     PcrBank bank, PcrMask pcrs,
                                                     const Digest& key_fingerprint,
                                                     const Digest& policy);

// The file as systemd-measure writes it, entries grouped by bank in the order given.
[[nodiscard]] std::string pcr_signatures_json(std::span<const PcrSignature> all);

}  // namespace ballast::crypt
