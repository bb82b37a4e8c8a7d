#include "ballast/crypt/token.hpp"

#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

#include "ballast/core/encoding.hpp"
#include "ballast/core/json.hpp"
#include "ballast/crypt/json_fields.hpp"

namespace ballast::crypt {
namespace {

using namespace jf;

Result<Json> parse_object(std::string_view text) {
    auto j = Json::parse(text, nullptr, false);
    if (j.is_discarded()) return fail(Errc::parse, "token is not valid JSON");
    if (!j.is_object()) return fail(Errc::parse, "token is not a JSON object");
    return j;
}

// Canonical decimal only ("1", never "01" or "+1"): the one spelling systemd and cryptsetup
// write, so a token that differs was not written by them.
Result<int> keyslot_of(const Json& token) {
    const auto* ks = BALLAST_TRY(required(token, "keyslots"));
    if (!ks->is_array() || ks->size() != 1 || !(*ks)[0].is_string())
        return fail(Errc::parse, "keyslots: {} is not an array of one keyslot number as a string",
                    shown(*ks));
    const auto& s = (*ks)[0].get_ref<const std::string&>();
    bool canonical = !s.empty() && s.size() <= 2 &&
                     std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
                     (s.size() == 1 || s[0] != '0');
    int keyslot = canonical ? std::stoi(s) : -1;
    if (keyslot < 0 || keyslot >= kMaxKeyslots)
        return fail(Errc::parse, "keyslots: {} is not a keyslot (0-{})", shown((*ks)[0]),
                    kMaxKeyslots - 1);
    return keyslot;
}

Result<std::string> type_of(const Json& token) {
    const auto* type = BALLAST_TRY(required(token, "type"));
    return *BALLAST_TRY(string_field(*type, "type"));
}

// systemd 257 may split the secret over several sealed objects ("shards") and then writes
// tpm2-blob and tpm2-policy-hash as arrays; a single shard is the classic token.
Result<const Json*> single_shard(const Json& v, std::string_view field) {
    if (!v.is_array()) return &v;
    if (v.size() == 1) return &v[0];
    return fail(Errc::unsupported, "{}: {} shards: written by systemd 257+, not supported", field,
                v.size());
}

// A TPM2B_PRIVATE then a TPM2B_PUBLIC, each a big-endian 16-bit size and that many bytes.
Status check_blob(std::string_view blob) {
    size_t at = 0;
    for (int part = 0; part < 2; ++part) {
        size_t size =
            blob.size() - at < 2 ? 0 : size_t(uint8_t(blob[at])) << 8 | uint8_t(blob[at + 1]);
        if (size == 0 || blob.size() - at - 2 < size)
            return fail(Errc::parse,
                        "tpm2-blob: not a marshalled TPM2B_PRIVATE followed by a TPM2B_PUBLIC");
        at += 2 + size;
    }
    if (at != blob.size())
        return fail(Errc::parse, "tpm2-blob: {} bytes after the TPM2B_PUBLIC", blob.size() - at);
    return {};
}

// A field this parser does not know may change how the object unseals (salts, NV policies,
// key derivations were all added that way): refuse the token rather than guess.
Status check_known_fields(const Json& token) {
    static constexpr std::array<std::string_view, 13> known{
        "type",          "keyslots",         "tpm2-blob",        "tpm2-pcrs",
        "tpm2-pcr-bank", "tpm2-primary-alg", "tpm2-policy-hash", "tpm2-pin",
        "tpm2_pubkey",   "tpm2_pubkey_pcrs", "tpm2_salt",        "tpm2_srk",
        "tpm2_pcrlock"};
    for (const auto& [key, value] : token.items()) {
        if (std::ranges::find(known, key) != known.end()) continue;
        if (key == "tpm2_pcrlock_nv")
            return fail(Errc::unsupported, "{}: pcrlock policies (systemd 255+) are not supported",
                        key);
        if (key.starts_with("tpm2_argon2id"))
            return fail(Errc::unsupported, "{}: Argon2id PINs (newer systemd) are not supported",
                        key);
        return fail(Errc::unsupported, "{}: unknown field (written by a newer systemd?)", key);
    }
    return {};
}

Result<std::string> keyslot_text(int keyslot) {
    if (keyslot < 0 || keyslot >= kMaxKeyslots)
        return fail(Errc::invalid_argument, "LUKS2 token: keyslot {} is not 0-31", keyslot);
    return std::to_string(keyslot);
}

Status read_required(const Json& j, Tpm2Token& t) {
    const auto* blob = BALLAST_TRY(required(j, "tpm2-blob"));
    blob = BALLAST_TRY(single_shard(*blob, "tpm2-blob"));
    t.blob = BALLAST_TRY(base64_field(*blob, "tpm2-blob"));
    BALLAST_TRY(check_blob(t.blob));
    const auto* pcrs = BALLAST_TRY(required(j, "tpm2-pcrs"));
    t.pcrs = BALLAST_TRY(pcr_array(*pcrs, "tpm2-pcrs"));
    const auto* hash = BALLAST_TRY(required(j, "tpm2-policy-hash"));
    hash = BALLAST_TRY(single_shard(*hash, "tpm2-policy-hash"));
    t.policy_hash = BALLAST_TRY(digest_field(*hash, "tpm2-policy-hash", "a SHA-256 policy digest"));
    return {};
}

Status read_optional(const Json& j, Tpm2Token& t) {
    if (const auto* v = member(j, "tpm2-pcr-bank")) {
        const auto* name = BALLAST_TRY(string_field(*v, "tpm2-pcr-bank"));
        t.bank = BALLAST_TRY_CTX(parse_pcr_bank(*name), "tpm2-pcr-bank");
    }
    if (const auto* v = member(j, "tpm2-primary-alg")) {
        const auto* name = BALLAST_TRY(string_field(*v, "tpm2-primary-alg"));
        t.primary_alg = BALLAST_TRY_CTX(parse_primary_alg(*name), "tpm2-primary-alg");
    }
    if (const auto* v = member(j, "tpm2-pin")) t.pin = BALLAST_TRY(bool_field(*v, "tpm2-pin"));
    if (const auto* v = member(j, "tpm2_salt")) t.salt = BALLAST_TRY(base64_field(*v, "tpm2_salt"));
    if (const auto* v = member(j, "tpm2_srk")) t.srk = BALLAST_TRY(base64_field(*v, "tpm2_srk"));
    return {};
}

// systemd writes tpm2_pubkey and tpm2_pubkey_pcrs together or not at all. pcrlock needs an NV
// index policy Ballast does not build; systemd 256+ writes "tpm2_pcrlock": false on every token.
Status read_policy_kind(const Json& j, Tpm2Token& t) {
    const auto* pcrs = member(j, "tpm2_pubkey_pcrs");
    const auto* key = member(j, "tpm2_pubkey");
    if (pcrs) t.pubkey_pcrs = BALLAST_TRY(pcr_array(*pcrs, "tpm2_pubkey_pcrs"));
    if (key) t.pubkey = BALLAST_TRY(base64_field(*key, "tpm2_pubkey"));
    if (t.pubkey_pcrs != 0 && !key)
        return fail(Errc::parse, "tpm2_pubkey_pcrs: set, but tpm2_pubkey is missing");
    // A key without PCRs signs nothing: systemd 252 does not use it, and neither does Ballast.
    if (t.pubkey_pcrs == 0) t.pubkey.reset();
    const auto* pcrlock = member(j, "tpm2_pcrlock");
    if (pcrlock && BALLAST_TRY(bool_field(*pcrlock, "tpm2_pcrlock")))
        return fail(Errc::unsupported,
                    "tpm2_pcrlock: pcrlock policies (systemd 255+) are not supported");
    return {};
}

}  // namespace

std::string_view to_string(PrimaryAlg alg) noexcept {
    return alg == PrimaryAlg::rsa ? "rsa" : "ecc";
}

Result<PrimaryAlg> parse_primary_alg(std::string_view name) {
    auto lower = [](char c) { return char(std::tolower(static_cast<unsigned char>(c))); };
    std::string s(name.size(), '\0');
    std::ranges::transform(name, s.begin(), lower);
    if (s == "ecc") return PrimaryAlg::ecc;
    if (s == "rsa") return PrimaryAlg::rsa;
    return fail(Errc::invalid_argument, "'{}' is not a primary key algorithm (expected ecc or rsa)",
                name);
}

Result<std::string> tpm2_token_json(const Tpm2Token& t) {
    if (t.salt || t.srk)
        return fail(Errc::invalid_argument,
                    "tpm2_token_json: tpm2_salt and tpm2_srk are not written: systemd 252 would "
                    "not unlock the token");
    if (t.pubkey.has_value() != (t.pubkey_pcrs != 0) || (t.pubkey && t.pubkey->empty()))
        return fail(Errc::invalid_argument,
                    "tpm2_token_json: a signed policy needs both a public key and its PCRs");
    if (t.blob.empty()) return fail(Errc::invalid_argument, "tpm2_token_json: empty blob");
    // ordered_json keeps systemd's field order, so the text matches what systemd writes.
    nlohmann::ordered_json j;
    j["type"] = std::string(kTpm2TokenType);
    j["keyslots"] = nlohmann::ordered_json::array({BALLAST_TRY(keyslot_text(t.keyslot))});
    j["tpm2-blob"] = base64_encode(t.blob);
    j["tpm2-pcrs"] = pcr_indices(t.pcrs);
    j["tpm2-pcr-bank"] = std::string(to_string(t.bank.value_or(PcrBank::sha256)));
    j["tpm2-primary-alg"] = std::string(to_string(t.primary_alg));
    j["tpm2-policy-hash"] = to_hex(t.policy_hash);
    j["tpm2-pin"] = t.pin;
    if (t.pubkey) {
        j["tpm2_pubkey_pcrs"] = pcr_indices(t.pubkey_pcrs);
        j["tpm2_pubkey"] = base64_encode(*t.pubkey);
    }
    return json_text(j);
}

Result<Tpm2Token> parse_tpm2_token(std::string_view json) {
    auto j = BALLAST_TRY(parse_object(json));
    auto type = BALLAST_TRY(type_of(j));
    if (type != kTpm2TokenType)
        return fail(Errc::parse, "type: {} is not {}", shown(j["type"]), kTpm2TokenType);
    BALLAST_TRY(check_known_fields(j));
    Tpm2Token t;
    t.keyslot = BALLAST_TRY(keyslot_of(j));
    BALLAST_TRY(read_required(j, t));
    BALLAST_TRY(read_optional(j, t));
    BALLAST_TRY(read_policy_kind(j, t));
    return t;
}

Result<std::string> recovery_token_json(int keyslot) {
    nlohmann::ordered_json j;
    j["type"] = std::string(kRecoveryTokenType);
    j["keyslots"] = nlohmann::ordered_json::array({BALLAST_TRY(keyslot_text(keyslot))});
    return json_text(j);
}

Result<std::string> token_type(std::string_view json) {
    return type_of(BALLAST_TRY(parse_object(json)));
}

Result<int> token_keyslot(std::string_view json) {
    return keyslot_of(BALLAST_TRY(parse_object(json)));
}

}  // namespace ballast::crypt
