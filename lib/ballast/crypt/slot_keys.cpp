#include "ballast/crypt/slot_keys.hpp"

#include <filesystem>

#include "ballast/crypt/keys.hpp"
#include "ballast/crypt/token.hpp"

namespace ballast::crypt {
namespace {

constexpr PcrMask kSlotIndependent = (PcrMask{1} << 7) | (PcrMask{1} << 14);

bool has_tpm2_token(const Luks& luks) {
    for (const TokenInfo& t : luks.tokens())
        if (t.type == kTpm2TokenType) return true;
    return false;
}

struct Current {
    Tpm2 tpm;
    std::vector<std::string> values;  // of the policy's PCRs, now
};

Result<Current> current(const KeyPolicy& p) {
    Tpm2 tpm = BALLAST_TRY(Tpm2::open(p.tcti));
    auto values = BALLAST_TRY(tpm.read_pcrs(p.bank, p.pcrs));
    return Current{std::move(tpm), std::move(values)};
}

// A token for the policy's PCRs and bank whose policy the current values satisfy; PIN-less ones
// must also still unseal (the policy hash does not name the TPM), as far as can be told without
// a signature. PIN tokens are taken on their
// policy: testing them would need the PIN.
std::optional<int> token_for_now(const Luks& luks, const KeyPolicy& p, Current& c,
                                 bool pinless_only) {
    for (const TokenInfo& t : luks.tokens()) {
        if (t.type != kTpm2TokenType) continue;
        auto parsed = parse_tpm2_token(t.json);
        if (!parsed || parsed->pcrs != p.pcrs || parsed->bank.value_or(PcrBank::sha256) != p.bank)
            continue;
        if (parsed->pin && pinless_only) continue;
        if (!literal_policy_matches(*parsed, c.values)) continue;
        // A signed token's signed PCRs are vouched for by the release's own signature, which
        // this boot cannot show for the next one: its literal PCRs and its key decide.
        if (!parsed->pin) {
            auto st = test_unseal(c.tpm, *parsed);
            if (!st && !(parsed->pubkey && st.error().code() == Errc::not_found)) continue;
        }
        return t.id;
    }
    return std::nullopt;
}

}  // namespace

Result<std::optional<KeyPolicy>> key_policy(const TpmSettings& tpm) {
    const std::string& dev = tpm.encrypted_device;
    std::error_code ec;
    if (dev.empty() || !std::filesystem::exists(dev, ec)) return std::nullopt;
    auto luks = Luks::open(dev);
    if (!luks) {
        if (luks.error().code() == Errc::not_found) return std::nullopt;
        return std::unexpected(std::move(luks).error());
    }
    KeyPolicy p;
    p.device = dev;
    p.tcti = tpm.device;
    p.bank = BALLAST_TRY_CTX(parse_pcr_bank(tpm.pcr_bank), "tpm.pcr_bank");
    p.pcrs = BALLAST_TRY_CTX(parse_pcr_list(tpm.pcrs), "tpm.pcrs");
    return p;
}

Result<std::string> prepare_next_boot(const KeyPolicy& p) {
    if (PcrMask other = p.pcrs & ~kSlotIndependent)
        return fail(Errc::unsupported,
                    "tpm.pcrs binds PCR {}, which the new slot changes and Ballast cannot "
                    "predict: bind to 7 (and 14) only, or upgrade and then reseal with the "
                    "recovery key (agentctl encrypt reseal --unlock-key-file)",
                    format_pcr_list(other));
    Luks luks = BALLAST_TRY(Luks::open(p.device));
    // Opened by passphrase or recovery key only: no TPM key to keep.
    if (!has_tpm2_token(luks)) return fmt::format("{} has no TPM2 token: nothing to do", p.device);
    Current c = BALLAST_TRY(current(p));
    if (auto id = token_for_now(luks, p, c, false))
        return fmt::format(
            "TPM2 token {} will open {} after the upgrade (PCRs {}:{} are the same "
            "in every slot)",
            *id, p.device, to_string(p.bank), format_pcr_list(p.pcrs));
    // The measurements changed since the last enrollment (a firmware or dbx update): seal to the
    // current values, which the next boot will see too. The old token stays until the commit.
    auto unlocked = unlock_tpm2(luks, c.tpm, nullptr);
    if (!unlocked)
        return fail(Errc::permission_denied,
                    "no TPM2 token opens {} with the current PCRs, so none can be enrolled for "
                    "the new slot: reseal with the recovery key first (agentctl encrypt reseal "
                    "--unlock-key-file): {}",
                    p.device, unlocked.error().what());
    SecretBytes vk = BALLAST_TRY(luks.volume_key(as_view(unlocked->passphrase)));
    Enrolled e = BALLAST_TRY(enroll_tpm2(luks, vk, c.tpm, p.bank, p.pcrs, std::nullopt));
    return fmt::format("enrolled TPM2 keyslot {} (token {}) for the new slot's PCRs {}:{}",
                       e.keyslot, e.token, to_string(p.bank), format_pcr_list(p.pcrs));
}

Result<std::string> drop_stale_tokens(const KeyPolicy& p) {
    Luks luks = BALLAST_TRY(Luks::open(p.device));
    if (!has_tpm2_token(luks)) return std::string("no TPM2 token: none removed");
    Current c = BALLAST_TRY(current(p));
    auto keep = token_for_now(luks, p, c, true);
    if (!keep) return std::string("no TPM2 token opens with the current PCRs: none removed");
    std::vector<int> stale = BALLAST_TRY(stale_tpm2_keyslots(luks, *keep));
    for (int slot : stale)
        BALLAST_TRY(wipe_slot(luks, slot));
    return fmt::format("removed {} stale TPM2 keyslot(s)", stale.size());
}

}  // namespace ballast::crypt
