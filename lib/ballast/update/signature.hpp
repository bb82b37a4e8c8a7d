// Bundle signatures: CMS (PKCS#7) detached over manifest.json, DER, with the signer's certificate
// (and an optional chain) inside, as RAUC signs its manifests. Verification checks, in order:
// the signature over the manifest (tampering), the signer's chain to a keyring certificate with
// validity dates (trust), and the signer's usage: digitalSignature and, when it has an extended
// key usage, codeSigning (RAUC's "codesign" purpose).
#pragma once

#include <string>
#include <string_view>

#include "ballast/core/result.hpp"

namespace ballast::update {

[[nodiscard]] Result<std::string> sign(std::string_view data, const std::string& cert_pem,
                                       const std::string& key_pem,
                                       const std::string& chain_pem = "");

struct Signer {
    std::string subject;    // "/O=Example/CN=Release signer"
    std::string not_after;  // "Nov 28 00:00:00 2027 GMT"
};

// Errc::verification with a message naming the problem: tampered, untrusted, expired, not yet
// valid, wrong key usage; Errc::parse for a signature that is not CMS at all.
[[nodiscard]] Result<Signer> verify(std::string_view data, std::string_view signature,
                                    const std::string& keyring_pem);

}  // namespace ballast::update
