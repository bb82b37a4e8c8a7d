#include "ballast/crypt/slot_keys.hpp"

#include <filesystem>

#include "ballast/crypt/keys.hpp"
#include "ballast/crypt/policy.hpp"
#include "ballast/crypt/token.hpp"

namespace ballast::crypt {
namespace {

constexpr PcrMask kSlotIndependent = (PcrMask{1} << 7) | (PcrMask{1} << 14);

struct Current {
    Luks luks;
    Tpm2 tpm;
    Digest policy;  // what a PIN-less token for the policy's PCRs must hold to open now
};

Result<Current> current(const KeyPolicy& p) {
    Luks luks = BALLAST_TRY(Luks::open(p.device));
    Tpm2 tpm = BALLAST_TRY(Tpm2::open(p.tcti));
    auto values = BALLAST_TRY(tpm.read_pcrs(p.bank, p.pcrs));
    Digest d = predict_policy(p.bank, p.pcrs, values, false);
    return Current{std::move(luks), std::move(tpm), d};
}

std::optional<int> token_with_policy(const Luks& luks, const KeyPolicy& p, const Digest& d) {
    for (const TokenInfo& t : luks.tokens()) {
        if (t.type != "systemd-tpm2") continue;
        auto parsed = parse_tpm2_token(t.json);
        if (parsed && !parsed->pin && parsed->pcrs == p.pcrs &&
            parsed->bank.value_or(PcrBank::sha256) == p.bank && parsed->policy_hash == d)
            return t.id;
    }
    return std::nullopt;
}

}  // namespace

Result<std::optional<KeyPolicy>> key_policy(const config::AgentSettings& s) {
    const std::string& dev = s.tpm.encrypted_device;
    std::error_code ec;
    if (dev.empty() || !std::filesystem::exists(dev, ec)) return std::nullopt;
    auto luks = Luks::open(dev);
    if (!luks) {
        if (luks.error().code() == Errc::not_found) return std::nullopt;
        return std::unexpected(std::move(luks).error());
    }
    KeyPolicy p;
    p.device = dev;
    p.tcti = s.tpm.device;
    p.bank = BALLAST_TRY_CTX(parse_pcr_bank(s.tpm.pcr_bank), "tpm.pcr_bank");
    p.pcrs = BALLAST_TRY_CTX(parse_pcr_list(s.tpm.pcrs), "tpm.pcrs");
    return p;
}

Result<std::string> prepare_next_boot(const KeyPolicy& p) {
    if (PcrMask other = p.pcrs & ~kSlotIndependent)
        return fail(Errc::unsupported,
                    "tpm.pcrs binds PCR {}, which the new slot changes and Ballast cannot "
                    "predict: bind to 7 (and 14) only, or upgrade and then reseal with the "
                    "recovery key (agentctl encrypt reseal --unlock-key-file)",
                    format_pcr_list(other));
    Current c = BALLAST_TRY(current(p));
    if (auto id = token_with_policy(c.luks, p, c.policy))
        return fmt::format(
            "TPM2 token {} will open {} after the upgrade (PCRs {}:{} are the same "
            "in every slot)",
            *id, p.device, to_string(p.bank), format_pcr_list(p.pcrs));
    // The measurements changed since the last enrollment (a firmware or dbx update): seal to the
    // current values, which the next boot will see too. The old token stays until the commit.
    auto unlocked = unlock_tpm2(c.luks, c.tpm, nullptr);
    if (!unlocked)
        return fail(Errc::permission_denied,
                    "no TPM2 token opens {} with the current PCRs, so none can be enrolled for "
                    "the new slot: reseal with the recovery key first (agentctl encrypt reseal "
                    "--unlock-key-file): {}",
                    p.device, unlocked.error().what());
    SecretBytes vk = BALLAST_TRY(c.luks.volume_key(as_view(unlocked->passphrase)));
    Enrolled e = BALLAST_TRY(enroll_tpm2(c.luks, vk, c.tpm, p.bank, p.pcrs, std::nullopt));
    return fmt::format("enrolled TPM2 keyslot {} (token {}) for the new slot's PCRs {}:{}",
                       e.keyslot, e.token, to_string(p.bank), format_pcr_list(p.pcrs));
}

Result<std::string> drop_stale_tokens(const KeyPolicy& p) {
    Current c = BALLAST_TRY(current(p));
    auto keep = token_with_policy(c.luks, p, c.policy);
    if (!keep) return std::string("no TPM2 token matches the current PCRs: none removed");
    std::vector<int> stale = BALLAST_TRY(stale_tpm2_keyslots(c.luks, *keep));
    for (int slot : stale)
        BALLAST_TRY(wipe_slot(c.luks, slot));
    return fmt::format("removed {} stale TPM2 keyslot(s)", stale.size());
}

}  // namespace ballast::crypt
