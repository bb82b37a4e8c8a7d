// Signed PCR policies: the RSA key as the TPM names it, systemd-measure's signature file, the
// PolicyAuthorize digest, and Ballast's own signing, against what systemd 252 made of the same
// key and PCR 11 value (tests/data/pcr-signature/README.md).
#include <catch2/catch.hpp>

#include <string>

#include <nlohmann/json.hpp>

#include "ballast/core/encoding.hpp"
#include "ballast/crypt/pcr_key.hpp"
#include "ballast/crypt/pcr_signature.hpp"
#include "ballast/crypt/policy.hpp"
#include "ballast/crypt/token.hpp"
#include "helpers.hpp"

using namespace ballast;
using namespace ballast::crypt;

namespace {

std::string fixture(const std::string& name) {
    return test::read_text(std::string(BALLAST_TEST_DATA) + "/pcr-signature/" + name);
}

std::string raw(std::string_view hex) {
    return from_hex(hex).value();
}

// systemd-measure calculate, phase enter-initrd, for the fixture's sections.
const std::string kPcr11EnterInitrd =
    raw("e2741a7962ac5be619e5e868ee534866b6adff783ed6d5ffad6da89801a08473");
const std::string kPcr11LeaveInitrd =
    raw("04b6ea57fba6d27abc387f4ba2ac3bb64a1772e092bc1ab25f1fe7344cb3b804");
constexpr PcrMask kMask11 = 1u << 11;

}  // namespace

TEST_CASE("PCR public keys as the TPM and the signature file name them", "[crypt][pcrsig]") {
    auto key = parse_pcr_public_key(fixture("public.pem"), "public.pem");
    REQUIRE(key);
    CHECK(key->exponent == 65537);
    CHECK(key->modulus.size() == 256);
    CHECK(uint8_t(key->modulus[0]) >= 0x80);  // a 2048-bit modulus, no leading zero byte
    // The fingerprint systemd-measure wrote as "pkfp".
    CHECK(to_hex(key->fingerprint) ==
          "56157b4fb4b9ecf5f986fbec2ba2e6c1f7cde4817c63fbdfb2c050d6631828b1");
    CHECK(key->pem == fixture("public.pem"));

    // TPMT_PUBLIC: RSA, SHA-256, DECRYPT|SIGN_ENCRYPT|USERWITHAUTH, empty authPolicy, no
    // symmetric, no scheme, 2048 bits, the exponent, the modulus.
    std::string t = tpmt_public(*key, ExponentForm::literal);
    REQUIRE(t.size() == 2 + 2 + 4 + 2 + 2 + 2 + 2 + 4 + 2 + 256);
    CHECK(t.substr(0, 22) == raw("0001000b000600400000001000100800000100010100"));
    CHECK(t.substr(22) == key->modulus);
    std::string zero = tpmt_public(*key, ExponentForm::default_zero);
    CHECK(zero.substr(16, 4) == raw("00000000"));
    auto name = tpm_name(*key, ExponentForm::literal);
    REQUIRE(name);
    CHECK(name->size() == 34);
    CHECK(name->substr(0, 2) == std::string("\x00\x0b", 2));
    CHECK(*name != tpm_name(*key, ExponentForm::default_zero).value());
}

TEST_CASE("PCR public keys: what is refused", "[crypt][pcrsig][errors]") {
    auto not_pem = parse_pcr_public_key("hello", "k.pem");
    REQUIRE_FALSE(not_pem);
    CHECK(not_pem.error().code() == Errc::parse);
    CHECK(test::contains(not_pem.error().what(), "k.pem: not a PEM public key"));
    // A private key is not what the token or the UKI carries.
    auto priv = parse_pcr_public_key(fixture("private.pem"), "private.pem");
    REQUIRE_FALSE(priv);
    CHECK(priv.error().code() == Errc::parse);
    // Nor a file with a private key beside the public one: the token keeps the text as given,
    // in a header anyone can read.
    for (const std::string& both : {fixture("private.pem") + fixture("public.pem"),
                                    fixture("public.pem") + fixture("private.pem"),
                                    fixture("public.pem") + fixture("public.pem")}) {
        auto r = parse_pcr_public_key(both, "both.pem");
        REQUIRE_FALSE(r);
        CHECK(r.error().what() ==
              "both.pem: not a PEM public key (one BEGIN PUBLIC KEY block and nothing else)");
    }
}

TEST_CASE("Ballast signs a PCR 11 policy exactly as systemd-measure 252 does", "[crypt][pcrsig]") {
    const std::string file = fixture("enter-initrd.sig.json");
    auto theirs = parse_pcr_signatures(file, "enter-initrd.sig.json");
    REQUIRE(theirs);
    REQUIRE(theirs->size() == 1);
    const std::string values[] = {kPcr11EnterInitrd};
    auto ours =
        sign_pcr_policy(fixture("private.pem"), "private.pem", PcrBank::sha256, kMask11, values);
    REQUIRE(ours);
    CHECK(ours->pcrs == kMask11);
    CHECK(ours->key_fingerprint == (*theirs)[0].key_fingerprint);
    CHECK(ours->policy == (*theirs)[0].policy);
    CHECK(ours->signature == (*theirs)[0].signature);  // PKCS#1 v1.5 is deterministic
    // The file, byte for byte (systemd writes it with a newline at the end).
    const PcrSignature one[] = {*ours};
    CHECK(pcr_signatures_json(one) + "\n" == file);
    // The pol is the PolicyPCR digest of the value from 32 zero bytes.
    CHECK(ours->policy == policy_pcr(Digest{}, PcrBank::sha256, kMask11, values).value());

    auto bad =
        sign_pcr_policy(fixture("public.pem"), "public.pem", PcrBank::sha256, kMask11, values);
    REQUIRE_FALSE(bad);
    CHECK(test::contains(bad.error().what(), "public.pem: not a PEM private key"));
}

TEST_CASE("signature files: every phase, and the one entry that matches", "[crypt][pcrsig]") {
    auto all = parse_pcr_signatures(fixture("all-phases.sig.json"), "all-phases.sig.json");
    REQUIRE(all);
    REQUIRE(all->size() == 4);
    auto key = parse_pcr_public_key(fixture("public.pem"), "public.pem").value();
    const std::string enter[] = {kPcr11EnterInitrd};
    const std::string leave[] = {kPcr11LeaveInitrd};
    Digest pol_enter = policy_pcr(Digest{}, PcrBank::sha256, kMask11, enter).value();
    Digest pol_leave = policy_pcr(Digest{}, PcrBank::sha256, kMask11, leave).value();
    const auto* e = find_pcr_signature(*all, PcrBank::sha256, kMask11, key.fingerprint, pol_enter);
    REQUIRE(e);
    CHECK(e == &(*all)[0]);
    CHECK(find_pcr_signature(*all, PcrBank::sha256, kMask11, key.fingerprint, pol_leave) ==
          &(*all)[1]);
    // Another bank, other PCRs, another key: none.
    CHECK_FALSE(find_pcr_signature(*all, PcrBank::sha1, kMask11, key.fingerprint, pol_enter));
    CHECK_FALSE(
        find_pcr_signature(*all, PcrBank::sha256, kMask11 | 1u << 7, key.fingerprint, pol_enter));
    Digest other_key = key.fingerprint;
    other_key[0] ^= 1;
    CHECK_FALSE(find_pcr_signature(*all, PcrBank::sha256, kMask11, other_key, pol_enter));
    // Unknown banks and keys are passed over, as systemd does.
    auto j = nlohmann::json::parse(fixture("enter-initrd.sig.json"));
    j["sm3_256"] = nlohmann::json::array({1, 2});
    j["comment"] = "made by hand";
    CHECK(parse_pcr_signatures(j.dump(), "x").value().size() == 1);
}

TEST_CASE("signature files: every malformed entry is named", "[crypt][pcrsig][errors]") {
    using J = nlohmann::json;
    auto base = J::parse(fixture("enter-initrd.sig.json"));
    struct Case {
        std::function<void(J&)> edit;
        std::string message;
    };
    const std::vector<Case> cases{
        {[](J& j) { j["sha256"] = "x"; }, R"(f: sha256: "x" is not an array)"},
        {[](J& j) { j["sha256"][0] = 3; }, "f: sha256[0]: 3 is not an object"},
        {[](J& j) { j["sha256"][0].erase("pol"); }, "f: sha256[0].pol: missing"},
        {[](J& j) { j["sha256"][0].erase("sig"); }, "f: sha256[0].sig: missing"},
        {[](J& j) { j["sha256"][0]["pcrs"] = {24}; }, "f: sha256[0].pcrs: 24 is not a PCR (0-23)"},
        {[](J& j) { j["sha256"][0]["pkfp"] = "abc"; },
         "f: sha256[0].pkfp: not 64 hex digits (a SHA-256 key fingerprint)"},
        {[](J& j) { j["sha256"][0]["pol"] = std::string(64, 'x'); },
         "f: sha256[0].pol: not 64 hex digits (a SHA-256 policy digest)"},
        {[](J& j) { j["sha256"][0]["sig"] = "not base64!"; },
         "f: sha256[0].sig: not non-empty standard base64"},
        {[](J& j) { j["sha256"].push_back(J::object()); }, "f: sha256[1].pcrs: missing"},
    };
    for (const auto& c : cases) {
        J j = base;
        c.edit(j);
        auto r = parse_pcr_signatures(j.dump(), "f");
        INFO(c.message);
        REQUIRE_FALSE(r);
        CHECK(r.error().code() == Errc::parse);
        CHECK(r.error().what() == c.message);
    }
    CHECK(parse_pcr_signatures("[]", "f").error().what() == "f: not a JSON object");
    CHECK(parse_pcr_signatures("{", "f").error().what() == "f: not valid JSON");
    CHECK(parse_pcr_signatures(std::string((1u << 20) + 1, ' '), "f").error().code() ==
          Errc::parse);
    J many = J::object();
    many["sha256"] = J::array();
    J small = base["sha256"][0];
    small["sig"] = "AA==";  // so that 4097 entries fit in 1 MiB
    for (int i = 0; i < 4097; ++i)
        many["sha256"].push_back(small);
    CHECK(parse_pcr_signatures(many.dump(), "f").error().what() == "f: more than 4096 signatures");
}

TEST_CASE("PolicyAuthorize digests", "[crypt][pcrsig][policy]") {
    auto key = parse_pcr_public_key(fixture("public.pem"), "public.pem").value();
    auto name = tpm_name(key, ExponentForm::literal).value();
    auto d = policy_authorize(name);
    REQUIRE(d);
    // It resets: what comes before it does not matter, so the token's policy starts with it.
    CHECK(predict_policy(PcrBank::sha256, 0, {}, false, name).value() == *d);
    CHECK(predict_policy(PcrBank::sha256, 0, {}, false).value() == Digest{});
    CHECK(predict_policy(PcrBank::sha256, 0, {}, true, name).value() ==
          policy_auth_value(*d).value());
    CHECK(policy_authorize(tpm_name(key, ExponentForm::default_zero).value()).value() != *d);
    CHECK(policy_authorize("short").error().code() == Errc::invalid_argument);
    CHECK(policy_authorize(std::string(34, '\0')).error().code() == Errc::invalid_argument);
}

TEST_CASE("tokens with a signed policy: systemd 252's fields and order", "[crypt][token]") {
    Tpm2Token t;
    t.keyslot = 2;
    t.blob = std::string("\x00\x01", 2) + "p" + std::string("\x00\x01", 2) + "q";
    t.pcrs = 1u << 7;
    t.bank = PcrBank::sha256;
    t.pubkey = fixture("public.pem");
    t.pubkey_pcrs = kMask11;
    auto json = tpm2_token_json(t);
    REQUIRE(json);
    auto j = nlohmann::ordered_json::parse(*json);
    std::vector<std::string> keys;
    for (const auto& [k, v] : j.items())
        keys.push_back(k);
    CHECK(keys == std::vector<std::string>{"type", "keyslots", "tpm2-blob", "tpm2-pcrs",
                                           "tpm2-pcr-bank", "tpm2-primary-alg", "tpm2-policy-hash",
                                           "tpm2-pin", "tpm2_pubkey_pcrs", "tpm2_pubkey"});
    CHECK(j["tpm2_pubkey_pcrs"] == nlohmann::json({11}));
    CHECK(j["tpm2_pubkey"] == base64_encode(fixture("public.pem")));  // the PEM text itself
    auto back = parse_tpm2_token(*json);
    REQUIRE(back);
    CHECK(back->pubkey == t.pubkey);
    CHECK(back->pubkey_pcrs == kMask11);
    CHECK(tpm2_token_json(*back).value() == *json);

    auto no_pcrs = t;
    no_pcrs.pubkey_pcrs = 0;
    CHECK(tpm2_token_json(no_pcrs).error().code() == Errc::invalid_argument);
    auto no_key = t;
    no_key.pubkey.reset();
    CHECK(tpm2_token_json(no_key).error().code() == Errc::invalid_argument);
    // A key without PCRs signs nothing: systemd 252 ignores it, and so does Ballast.
    auto key_only = nlohmann::json::parse(*json);
    key_only.erase("tpm2_pubkey_pcrs");
    auto ignored = parse_tpm2_token(key_only.dump());
    REQUIRE(ignored);
    CHECK_FALSE(ignored->pubkey);
}
