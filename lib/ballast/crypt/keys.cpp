#include "ballast/crypt/keys.hpp"

#include <algorithm>

#include "ballast/core/encoding.hpp"
#include "ballast/crypt/policy.hpp"
#include "ballast/crypt/recovery_key.hpp"
#include "ballast/crypt/token.hpp"

namespace ballast::crypt {

std::string_view to_string(SlotKind k) noexcept {
    switch (k) {
        case SlotKind::passphrase:
            return "passphrase";
        case SlotKind::recovery:
            return "recovery";
        case SlotKind::tpm2:
            return "tpm2";
        case SlotKind::other_token:
            return "token";
    }
    return "?";
}

std::vector<Slot> classify(const std::vector<KeyslotInfo>& keyslots,
                           const std::vector<TokenInfo>& tokens) {
    std::vector<Slot> out;
    for (const KeyslotInfo& k : keyslots) {
        Slot s{k.slot, SlotKind::passphrase, std::nullopt, k.pbkdf};
        for (const TokenInfo& t : tokens) {
            auto slot = token_keyslot(t.json);
            if (!slot || *slot != k.slot) continue;
            s.token = t.id;
            s.kind = t.type == kTpm2TokenType       ? SlotKind::tpm2
                     : t.type == "systemd-recovery" ? SlotKind::recovery
                                                    : SlotKind::other_token;
            break;
        }
        out.push_back(std::move(s));
    }
    return out;
}

Status check_wipe(const std::vector<Slot>& slots, int keyslot) {
    auto it = std::ranges::find(slots, keyslot, &Slot::keyslot);
    if (it == slots.end()) return fail(Errc::not_found, "keyslot {} is not in use", keyslot);
    auto fallback = [](const Slot& s) {
        return s.kind == SlotKind::recovery || s.kind == SlotKind::passphrase;
    };
    if (fallback(*it) && std::ranges::count_if(slots, fallback) == 1)
        return fail(Errc::invalid_argument,
                    "keyslot {} is the last {} slot: without it the volume opens only through "
                    "the TPM; add a new recovery key first (agentctl encrypt recovery-key)",
                    keyslot, to_string(it->kind));
    return {};
}

namespace {

// systemd turns the sealed bytes into the keyslot passphrase with plain base64.
SecretBytes passphrase_of(const SecretBytes& secret) {
    std::string b64 = base64_encode(as_view(secret));
    SecretBytes out(b64.data(), b64.size());
    ::explicit_bzero(b64.data(), b64.size());
    return out;
}

SealedObject sealed_object(const Tpm2Token& t, const SignedPcrs* signer = nullptr) {
    SealedObject o;
    o.signer = signer;
    o.blob = t.blob;
    o.primary_alg = t.primary_alg;
    if (t.srk) o.srk = *t.srk;
    o.bank = t.bank.value_or(PcrBank::sha256);
    o.pcrs = t.pcrs;
    o.policy = t.policy_hash;
    return o;
}

// The token's signed policy, if it has one: its key parsed, with the signatures to choose from.
class TokenSigner {
  public:
    static Result<TokenSigner> of(const Tpm2Token& t, const PcrSignatureFile* signatures) {
        TokenSigner out;
        if (!t.pubkey) return out;
        out.key_ = BALLAST_TRY(parse_pcr_public_key(*t.pubkey, "tpm2_pubkey"));
        out.pcrs_ = t.pubkey_pcrs;
        out.signatures_ = signatures;
        return out;
    }
    // Points into this object: valid while it lives.
    [[nodiscard]] std::optional<SignedPcrs> get() const {
        if (!key_) return std::nullopt;
        SignedPcrs s{&*key_, pcrs_, {}, {}};
        if (signatures_) {
            s.signatures = signatures_->entries;
            s.source = signatures_->path;
        }
        return s;
    }

  private:
    std::optional<PcrPublicKey> key_;
    PcrMask pcrs_ = 0;
    const PcrSignatureFile* signatures_ = nullptr;
};

const SignedPcrs* ptr(const std::optional<SignedPcrs>& s) {
    return s ? &*s : nullptr;
}

std::optional<Digest> fingerprint(const std::optional<std::string>& pem) {
    if (!pem) return std::nullopt;
    auto key = parse_pcr_public_key(*pem, "tpm2_pubkey");
    if (!key) return std::nullopt;
    return key->fingerprint;
}

// Same signing key (by fingerprint, not by PEM spelling) and same signed PCRs, or neither signed.
bool same_signer(const Tpm2Token& a, const Tpm2Token& b) {
    const auto fa = fingerprint(a.pubkey);
    // Keys that do not parse are the same only when they are the same text.
    return a.pubkey.has_value() == b.pubkey.has_value() && a.pubkey_pcrs == b.pubkey_pcrs &&
           fa == fingerprint(b.pubkey) && (fa || a.pubkey == b.pubkey);
}

bool same_signer(const Tpm2Token& t, const SignedPcrs* s) {
    if (!s) return !t.pubkey;
    return t.pubkey && t.pubkey_pcrs == s->pcrs && fingerprint(t.pubkey) == s->key->fingerprint;
}

struct ParsedToken {
    int id;
    Tpm2Token token;
};

std::vector<ParsedToken> tpm2_tokens(const Luks& luks) {
    std::vector<ParsedToken> out;
    for (const TokenInfo& t : luks.tokens()) {
        if (t.type != kTpm2TokenType) continue;
        if (auto parsed = parse_tpm2_token(t.json)) out.push_back({t.id, std::move(*parsed)});
    }
    return out;
}

}  // namespace

Result<Enrolled> enroll_tpm2(Luks& luks, const SecretBytes& volume_key, Tpm2& tpm, PcrBank bank,
                             PcrMask pcrs, std::optional<std::string_view> pin,
                             const SignedPcrs* signer) {
    std::optional<std::string> pin_auth;
    if (pin) pin_auth = BALLAST_TRY(pin_auth_value(*pin, std::nullopt));
    SecretBytes secret = BALLAST_TRY(random_secret(32));
    Sealed sealed = BALLAST_TRY(tpm.seal(secret.span(), bank, pcrs, pin_auth, signer));
    // The same signatures for testing the tokens already there.
    PcrSignatureFile given;
    if (signer) {
        given.entries.assign(signer->signatures.begin(), signer->signatures.end());
        given.path = std::string(signer->source);
    }
    // Same policy already enrolled (systemd's search_policy_hash) and still unsealing with this
    // TPM: enrolling is idempotent. The hash does not name the TPM, so a token from a cleared or
    // replaced TPM matches too; it is dead, and goes once the new one is in. A PIN enrollment is
    // never "the same": the policy does not depend on the PIN, and a new PIN must take effect.
    std::vector<int> dead;
    for (const ParsedToken& t : tpm2_tokens(luks)) {
        if (pin || t.token.pin || t.token.policy_hash != sealed.policy || t.token.bank != bank ||
            t.token.pcrs != pcrs || !same_signer(t.token, signer))
            continue;
        auto st = test_unseal(tpm, t.token, &given);
        // The same key and literal PCRs give the same hash (PolicyAuthorize does not cover the
        // signed PCRs, hence same_signer); with no signature to test it, take systemd's rule
        // ("already enrolled") as it stands.
        if (st || st.error().code() == Errc::not_found)
            return Enrolled{t.token.keyslot, t.id, true, bool(st)};
        if (st.error().code() == Errc::busy) return std::unexpected(std::move(st).error());
        dead.push_back(t.token.keyslot);
    }

    Tpm2Token token;
    token.blob = sealed.blob;
    token.pcrs = pcrs;
    token.bank = bank;
    token.primary_alg = sealed.primary_alg;
    token.policy_hash = sealed.policy;
    token.pin = pin.has_value();
    if (signer) {
        token.pubkey = signer->key->pem;
        token.pubkey_pcrs = signer->pcrs;
    }
    bool tested = true;
    auto check = tpm.unseal(sealed_object(token, signer), pin_auth);
    if (!check && signer && check.error().code() == Errc::not_found)
        tested = false;
    else if (!check)
        return std::unexpected(std::move(check).error().context("check the new TPM2 seal"));
    else if (check->size() != secret.size() || !std::ranges::equal(check->span(), secret.span()))
        return fail(Errc::verification, "check the new TPM2 seal: unsealed bytes differ");

    SecretBytes pass = passphrase_of(secret);
    token.keyslot = BALLAST_TRY(luks.add_keyslot(volume_key, as_view(pass)));
    auto text = tpm2_token_json(token);
    auto id = text ? luks.add_token(*text) : Result<int>(std::unexpected(text.error()));
    if (!id) {
        // systemd 252 leaves the keyslot behind here; an orphan slot nobody can open is noise.
        if (auto st = luks.destroy_keyslot(token.keyslot); !st)
            return std::unexpected(std::move(id).error().context(fmt::format(
                "(keyslot {} is left without a token: {})", token.keyslot, st.error().what())));
        return std::unexpected(std::move(id).error());
    }
    for (int slot : dead)
        BALLAST_TRY_CTX(wipe_slot(luks, slot), "remove a dead TPM2 keyslot");
    return Enrolled{token.keyslot, *id, false, tested};
}

Status test_unseal(Tpm2& tpm, const Tpm2Token& token, const PcrSignatureFile* signatures) {
    if (token.pin) return fail(Errc::invalid_argument, "a PIN token cannot be tested without it");
    TokenSigner signer = BALLAST_TRY(TokenSigner::of(token, signatures));
    auto s = signer.get();
    BALLAST_TRY(tpm.unseal(sealed_object(token, ptr(s)), std::nullopt));
    return {};
}

bool literal_policy_matches(const Tpm2Token& token, std::span<const std::string> values) {
    const PcrBank bank = token.bank.value_or(PcrBank::sha256);
    if (!token.pubkey)
        return predict_policy(bank, token.pcrs, values, token.pin) == token.policy_hash;
    auto key = parse_pcr_public_key(*token.pubkey, "tpm2_pubkey");
    if (!key) return false;
    for (ExponentForm form : {ExponentForm::literal, ExponentForm::default_zero}) {
        auto name = tpm_name(*key, form);
        if (name && predict_policy(bank, token.pcrs, values, token.pin, *name) == token.policy_hash)
            return true;
    }
    return false;
}

Result<RecoveryKey> enroll_recovery_key(Luks& luks, const SecretBytes& volume_key) {
    RecoveryKey out;
    out.key = BALLAST_TRY(make_recovery_key());
    out.keyslot = BALLAST_TRY(luks.add_keyslot(volume_key, out.key));
    auto text = recovery_token_json(out.keyslot);
    if (auto id = text ? luks.add_token(*text) : Result<int>(std::unexpected(text.error())); !id) {
        (void)luks.destroy_keyslot(out.keyslot);
        return std::unexpected(std::move(id).error());
    }
    return out;
}

Result<Unlocked> unlock_tpm2(Luks& luks, Tpm2& tpm,
                             const std::function<std::optional<std::string>()>& ask_pin,
                             const OpenKeyslot& open, const PcrSignatureFile* signatures) {
    std::vector<std::string> reasons;
    // PIN-less tokens first: nobody is asked for a PIN when the TPM alone can open the volume.
    std::vector<TokenInfo> tokens = luks.tokens();
    std::ranges::stable_partition(tokens, [](const TokenInfo& t) {
        auto parsed = parse_tpm2_token(t.json);
        return !parsed || !parsed->pin;
    });
    bool pin_refused = false;
    for (const TokenInfo& info : tokens) {
        if (info.type != kTpm2TokenType) continue;
        auto token = parse_tpm2_token(info.json);
        if (!token) {
            reasons.push_back(fmt::format("token {}: {}", info.id, token.error().what()));
            continue;
        }
        auto signer = TokenSigner::of(*token, signatures);
        if (!signer) {
            reasons.push_back(fmt::format("token {}: {}", info.id, signer.error().what()));
            continue;
        }
        std::optional<std::string> pin_auth;
        if (token->pin) {
            if (pin_refused) continue;
            std::optional<std::string> pin = ask_pin ? ask_pin() : std::nullopt;
            if (!pin) {
                reasons.push_back(fmt::format("token {}: needs a PIN", info.id));
                continue;
            }
            auto auth = pin_auth_value(
                *pin, token->salt ? std::optional<std::string_view>(*token->salt) : std::nullopt);
            if (!auth) {
                reasons.push_back(fmt::format("token {}: {}", info.id, auth.error().what()));
                continue;
            }
            pin_auth = std::move(*auth);
        }
        auto signed_pcrs = signer->get();
        auto secret = tpm.unseal(sealed_object(*token, ptr(signed_pcrs)), pin_auth);
        if (!secret) {
            reasons.push_back(fmt::format("token {} ({}:{}): {}", info.id,
                                          to_string(token->bank.value_or(PcrBank::sha256)),
                                          format_pcr_list(token->pcrs), secret.error().what()));
            // Lockout refuses everything after; a wrong PIN is not tried on other tokens, so one
            // typo costs one try against the TPM's lockout counter.
            if (secret.error().code() == Errc::busy) break;
            if (secret.error().code() == Errc::permission_denied) pin_refused = true;
            continue;
        }
        SecretBytes pass = passphrase_of(*secret);
        Status opened;
        if (open) {
            opened = open(token->keyslot, as_view(pass));
        } else if (auto slot = luks.check_passphrase(as_view(pass), token->keyslot); !slot) {
            opened = std::unexpected(std::move(slot).error());
        }
        if (!opened) {
            reasons.push_back(fmt::format("token {}: {}", info.id, opened.error().what()));
            continue;
        }
        return Unlocked{token->keyslot, info.id, std::move(pass)};
    }
    if (reasons.empty()) return fail(Errc::not_found, "{}: no TPM2 token", luks.path());
    std::string joined;
    for (const std::string& r : reasons)
        joined += (joined.empty() ? "" : "; ") + r;
    return fail(Errc::permission_denied, "{}: the TPM did not unlock it: {}", luks.path(), joined);
}

Result<SecretBytes> volume_key_from_passphrase(Luks& luks, std::string_view key) {
    // A recovery key typed without dashes or in upper case still opens its slot.
    if (auto normal = normalize_recovery_key(key)) return luks.volume_key(*normal);
    return luks.volume_key(key);
}

Status wipe_slot(Luks& luks, int keyslot) {
    std::vector<TokenInfo> tokens = luks.tokens();
    BALLAST_TRY(check_wipe(classify(luks.keyslots(), tokens), keyslot));
    for (const TokenInfo& t : tokens) {
        auto slot = token_keyslot(t.json);
        if (slot && *slot == keyslot) BALLAST_TRY(luks.remove_token(t.id));
    }
    return luks.destroy_keyslot(keyslot);
}

Result<std::vector<int>> stale_tpm2_keyslots(Luks& luks, int keep_token) {
    std::vector<ParsedToken> tokens = tpm2_tokens(luks);
    auto keep = std::ranges::find(tokens, keep_token, &ParsedToken::id);
    if (keep == tokens.end()) return fail(Errc::not_found, "TPM2 token {} is gone", keep_token);
    std::vector<int> out;
    for (const ParsedToken& t : tokens)
        if (t.id != keep_token && t.token.keyslot != keep->token.keyslot &&
            t.token.policy_hash != keep->token.policy_hash && t.token.pcrs == keep->token.pcrs &&
            t.token.bank == keep->token.bank && t.token.pin == keep->token.pin &&
            same_signer(t.token, keep->token))
            out.push_back(t.token.keyslot);
    return out;
}

nlohmann::json describe(Luks& luks, Tpm2* tpm) {
    nlohmann::json j;
    j["device"] = luks.path();
    j["uuid"] = luks.uuid();
    std::vector<TokenInfo> tokens = luks.tokens();
    nlohmann::json slots = nlohmann::json::array();
    for (const Slot& s : classify(luks.keyslots(), tokens)) {
        nlohmann::json e{{"keyslot", s.keyslot}, {"kind", to_string(s.kind)}, {"pbkdf", s.pbkdf}};
        if (s.token) e["token"] = *s.token;
        slots.push_back(std::move(e));
    }
    j["keyslots"] = std::move(slots);
    nlohmann::json toks = nlohmann::json::array();
    for (const TokenInfo& t : tokens) {
        nlohmann::json e{{"id", t.id}, {"type", t.type}};
        if (auto slot = token_keyslot(t.json)) e["keyslot"] = *slot;
        if (t.type == kTpm2TokenType) {
            auto parsed = parse_tpm2_token(t.json);
            if (!parsed) {
                e["error"] = parsed.error().what();
            } else {
                PcrBank bank = parsed->bank.value_or(PcrBank::sha256);
                e["pcrs"] = pcr_indices(parsed->pcrs);
                e["pcr_bank"] = to_string(bank);
                e["pin"] = parsed->pin;
                e["policy_hash"] = to_hex({parsed->policy_hash.data(), parsed->policy_hash.size()});
                if (parsed->pubkey) {
                    e["signed_pcrs"] = pcr_indices(parsed->pubkey_pcrs);
                    if (auto key = parse_pcr_public_key(*parsed->pubkey, "tpm2_pubkey"))
                        e["pubkey_fingerprint"] = to_hex(key->fingerprint);
                    else
                        e["error"] = key.error().what();
                }
                if (tpm) {
                    // Predicted offline from the current PCRs: no unseal, no lockout risk. A
                    // signed policy also needs a signature, which is not predicted.
                    auto values = tpm->read_pcrs(bank, parsed->pcrs);
                    if (values)
                        e[parsed->pubkey ? "literal_pcrs_satisfied" : "policy_satisfied"] =
                            literal_policy_matches(*parsed, *values);
                    else
                        e["error"] = values.error().what();
                }
            }
        }
        toks.push_back(std::move(e));
    }
    j["tokens"] = std::move(toks);
    if (tpm) {
        nlohmann::json t{{"device", tpm->tcti()}};
        if (auto l = tpm->lockout())
            t["lockout"] = {{"in_lockout", l->in_lockout},
                            {"failed_tries", l->counter},
                            {"max_tries", l->max_tries},
                            {"recovery_seconds", l->recovery_seconds}};
        if (auto v = tpm->read_pcrs(PcrBank::sha256, (1u << 7) | (1u << 14))) {
            nlohmann::json pcrs;
            std::vector<int> idx = pcr_indices((1u << 7) | (1u << 14));
            for (size_t i = 0; i < idx.size(); ++i)
                pcrs[std::to_string(idx[i])] =
                    to_hex({reinterpret_cast<const uint8_t*>((*v)[i].data()), (*v)[i].size()});
            t["pcrs_sha256"] = std::move(pcrs);
        }
        j["tpm"] = std::move(t);
    }
    return j;
}

}  // namespace ballast::crypt
