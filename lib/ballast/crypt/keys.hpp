// Keyslot operations on a LUKS2 volume, shared by install, agentctl encrypt, unlock at boot and
// the upgrade hook: enroll a TPM2 token or a recovery key, unlock through the tokens, wipe a
// slot without ever removing the last way in that needs no TPM.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "ballast/core/result.hpp"
#include "ballast/core/secret.hpp"
#include "ballast/crypt/luks.hpp"
#include "ballast/crypt/pcr.hpp"
#include "ballast/crypt/pcr_signature_file.hpp"
#include "ballast/crypt/token.hpp"
#include "ballast/crypt/tpm2.hpp"

namespace ballast::crypt {

[[nodiscard]] inline std::string_view as_view(const SecretBytes& s) noexcept {
    return {reinterpret_cast<const char*>(s.data()), s.size()};
}

// What opens a keyslot, from the token that references it (none: a passphrase).
enum class SlotKind { passphrase, recovery, tpm2, other_token };
[[nodiscard]] std::string_view to_string(SlotKind k) noexcept;

struct Slot {
    int keyslot = -1;
    SlotKind kind = SlotKind::passphrase;
    std::optional<int> token;
    std::string pbkdf;
};
// Pure: keyslots classified by their tokens.
[[nodiscard]] std::vector<Slot> classify(const std::vector<KeyslotInfo>& keyslots,
                                         const std::vector<TokenInfo>& tokens);
// Pure: why `keyslot` may not be wiped (missing, or the last recovery/passphrase slot).
[[nodiscard]] Status check_wipe(const std::vector<Slot>& slots, int keyslot);

struct Enrolled {
    int keyslot = -1;
    int token = -1;
    bool already = false;  // a token with the same policy existed: nothing was added
    // The new token was unsealed before it was written. A signed policy can be tested only with
    // a signature for the current PCR values, which a node enrolling from its running system
    // (after the initrd) never has: then it is not.
    bool tested = true;
};
// Seals a fresh secret to the current PCRs (systemd 252's token format and passphrase), checks
// that it unseals, then adds keyslot and token; a token that cannot be written takes its
// keyslot with it. A PIN-less token with the same policy that still unseals makes this a no-op
// (`already`); one that no longer does (cleared or replaced TPM) is removed after the new one.
// `signer` adds a signed PCR policy, as systemd-cryptenroll --tpm2-public-key does.
[[nodiscard]] Result<Enrolled> enroll_tpm2(Luks& luks, const SecretBytes& volume_key, Tpm2& tpm,
                                           PcrBank bank, PcrMask pcrs,
                                           std::optional<std::string_view> pin,
                                           const SignedPcrs* signer = nullptr);

// Unseals a PIN-less token (nothing counts against the TPM's lockout): does it still open here?
// A signed token needs a signature for the current PCR values in `signatures`; without one the
// answer is Errc::not_found (cannot tell).
[[nodiscard]] Status test_unseal(Tpm2& tpm, const Tpm2Token& token,
                                 const PcrSignatureFile* signatures = nullptr);

// Whether the current values of a token's literal PCRs (`values`, ascending) give its policy.
// For a signed token this is the part the PCR values decide: its key (either spelling of the
// exponent) and literal PCRs, not whether a signature for the signed PCRs exists.
[[nodiscard]] bool literal_policy_matches(const Tpm2Token& token,
                                          std::span<const std::string> values);

struct RecoveryKey {
    int keyslot = -1;
    std::string key;  // shown once, never logged
};
[[nodiscard]] Result<RecoveryKey> enroll_recovery_key(Luks& luks, const SecretBytes& volume_key);

struct Unlocked {
    int keyslot = -1;
    int token = -1;
    SecretBytes passphrase;
};
// Tries every systemd-tpm2 token; signed ones with `signatures` (tpm2-pcr-signature.json). A PIN is
// asked for (`ask_pin`, may return nullopt to skip) only for tokens that want one, so a PIN never
// counts against the TPM's lockout for a token that has none. `open` uses the unsealed passphrase
// on the token's keyslot (activate, or check: the default); its failure moves on to the next token,
// so the keyslot's PBKDF runs once per token. The error lists each token's reason.
using OpenKeyslot = std::function<Status(int keyslot, std::string_view passphrase)>;
[[nodiscard]] Result<Unlocked> unlock_tpm2(
    Luks& luks, Tpm2& tpm, const std::function<std::optional<std::string>()>& ask_pin,
    const OpenKeyslot& open = {}, const PcrSignatureFile* signatures = nullptr);

// The volume key from a recovery key (any spelling normalize_recovery_key takes) or passphrase.
[[nodiscard]] Result<SecretBytes> volume_key_from_passphrase(Luks& luks, std::string_view key);

// Removes keyslot and the tokens referencing it, after check_wipe.
[[nodiscard]] Status wipe_slot(Luks& luks, int keyslot);

// The keyslots of TPM2 tokens that `keep` (just enrolled for the new state) replaces: same PCRs,
// bank, PIN use and signing key, another policy. Tokens the operator made for other PCRs or with a
// PIN stay.
[[nodiscard]] Result<std::vector<int>> stale_tpm2_keyslots(Luks& luks, int keep_token);

// Everything `agentctl encrypt status` shows; `tpm` adds current PCRs, lockout and whether each
// token's policy is satisfied now.
[[nodiscard]] nlohmann::json describe(Luks& luks, Tpm2* tpm);

}  // namespace ballast::crypt
