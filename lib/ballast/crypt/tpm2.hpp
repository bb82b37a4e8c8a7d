// A TPM2 reached through a TCTI (systemd's spelling: "device:/dev/tpmrm0",
// "swtpm:host=127.0.0.1,port=2321"), and the sealing scheme of systemd 252's tpm2-util.c:
// a transient primary (ECC P-256, RSA-2048 fallback) recreated for every call, a KEYEDHASH
// object holding 32 secret bytes under a PolicyPCR [+ PolicyAuthValue] policy, marshalled as
// TPM2B_PRIVATE || TPM2B_PUBLIC. Every handle is flushed when its owner goes out of scope, so
// many unseals in a row leak nothing even without a resource manager.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ballast/core/result.hpp"
#include "ballast/core/secret.hpp"
#include "ballast/crypt/pcr.hpp"
#include "ballast/crypt/pcr_key.hpp"
#include "ballast/crypt/pcr_signature.hpp"
#include "ballast/crypt/token.hpp"

namespace ballast::crypt {

// `tcti` as given by tpm.device / --tpm2-device; "" or "auto" → the kernel's resource manager.
[[nodiscard]] Result<std::string> resolve_tcti(std::string_view tcti);

struct Sealed {
    std::string blob;  // TPM2B_PRIVATE || TPM2B_PUBLIC
    Digest policy{};
    PrimaryAlg primary_alg = PrimaryAlg::ecc;
};

// A signed PCR policy (systemd 252's tpm2_pubkey): PolicyAuthorize by `key` of PolicyPCR over
// `pcrs`, so that any PCR values the key's owner signed satisfy it. At unseal the signature
// comes from `signatures` (tpm2-pcr-signature.json); sealing needs none.
struct SignedPcrs {
    const PcrPublicKey* key = nullptr;
    PcrMask pcrs = 0;
    std::span<const PcrSignature> signatures;
    std::string_view source;  // the file they came from, for messages ("": none found)
};

// What Unseal needs from a token.
struct SealedObject {
    std::string_view blob;
    PrimaryAlg primary_alg = PrimaryAlg::ecc;
    std::optional<std::string_view> srk;  // serialized ESYS_TR of a persistent SRK (systemd 254+)
    PcrBank bank = PcrBank::sha256;
    PcrMask pcrs = 0;
    Digest policy{};
    const SignedPcrs* signer = nullptr;
};

struct Lockout {
    bool in_lockout = false;
    uint32_t counter = 0;
    uint32_t max_tries = 0;
    uint32_t recovery_seconds = 0;
};

class Tpm2 {
  public:
    // Connects and sends TPM2_Startup(CLEAR) (already-started is fine).
    [[nodiscard]] static Result<Tpm2> open(std::string_view tcti);
    Tpm2(Tpm2&&) noexcept;
    Tpm2& operator=(Tpm2&&) noexcept;
    ~Tpm2();

    [[nodiscard]] const std::string& tcti() const noexcept { return tcti_; }

    // Seals `secret` to the current values of `pcrs` in `bank`; `signer` adds a signed policy
    // first (as systemd 252 orders it), `pin_auth` (pin_auth_value()) PolicyAuthValue last.
    // PIN-less objects get NODA so power cuts never count as attacks.
    [[nodiscard]] Result<Sealed> seal(std::span<const uint8_t> secret, PcrBank bank, PcrMask pcrs,
                                      std::optional<std::string_view> pin_auth,
                                      const SignedPcrs* signer = nullptr);
    // Errc::verification when the current PCRs do not give the sealed policy (for a signed
    // policy: no signature for them, or one the TPM does not accept), permission_denied for a
    // wrong PIN, busy for a TPM in dictionary-attack lockout (any call may say so).
    [[nodiscard]] Result<SecretBytes> unseal(const SealedObject& obj,
                                             std::optional<std::string_view> pin_auth);
    // Raw values of `pcrs`, ascending.
    [[nodiscard]] Result<std::vector<std::string>> read_pcrs(PcrBank bank, PcrMask pcrs);
    [[nodiscard]] Result<Lockout> lockout();
    // TPM commands sent so far (for the unlock benchmark).
    [[nodiscard]] uint64_t commands() const noexcept;

    struct State;

  private:
    explicit Tpm2(std::unique_ptr<State> s, std::string tcti);
    std::unique_ptr<State> s_;
    std::string tcti_;
};

}  // namespace ballast::crypt
