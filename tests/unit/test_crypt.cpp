// crypt/ pure logic: PCR lists and banks, offline TPM2 policy digests, PIN auth values, the
// systemd-tpm2 and systemd-recovery LUKS2 tokens, recovery keys.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "ballast/core/encoding.hpp"
#include "ballast/crypt/pcr.hpp"
#include "ballast/crypt/policy.hpp"
#include "ballast/crypt/recovery_key.hpp"
#include "ballast/crypt/token.hpp"

using namespace ballast;
using namespace ballast::crypt;

namespace {

std::string unhex(std::string_view hex) {
    std::string out;
    for (size_t i = 0; i + 1 < hex.size(); i += 2)
        out += char(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16));
    return out;
}

std::string hex(const Result<Digest>& d) {
    REQUIRE(d);
    return to_hex(*d);
}

template <class T>
std::string error_of(const Result<T>& r) {
    REQUIRE_FALSE(r);
    return r.error().what();
}

bool contains(const std::string& text, std::string_view part) {
    return text.find(part) != std::string::npos;
}

// PCR values and the digests tpm2-tools 5.4 computed on swtpm 0.7.1 for them (the TPM, not this
// code, is the reference). PCRs were extended from zero:
//   tpm2_pcrextend 7:sha256=$(echo -n x|sha256sum),sha1=$(echo -n x|sha1sum)
//   tpm2_pcrextend 0:sha256=$(echo -n a|sha256sum); tpm2_pcrextend 14:sha256=$(echo -n b|sha256sum)
// and each digest came from tpm2_startauthsession --policy-session, tpm2_policypcr -l BANK:LIST
// and/or tpm2_policyauthvalue, with -L writing the session's policy digest.
const std::string kPcr0 = unhex("8C374A53782642F7514D087D26A3E733F1B806009A03E04A43B288EF2FA9F9C0");
const std::string kPcr7 = unhex("7F85193790DE75E46B70BFEC3614098F47332A6993DABAC6E38AD35F47DF5DA4");
const std::string kPcr14 =
    unhex("1B36018E878C666B4B6CFB4528E2C1A8A6D84980446AAD049AD5F02C464FE995");
const std::string kPcr7Sha1 = unhex("1D5F498C9D78FCD2895DE291B09FBC625EBCD150");
constexpr PcrMask kMask7 = 1u << 7;
constexpr PcrMask kMask0714 = 1u << 0 | 1u << 7 | 1u << 14;

// Written by systemd-cryptenroll 252.39 on swtpm (../shared/specs/tpm2-luks2.md, section 1).
constexpr std::string_view kRealToken =
    R"({"type":"systemd-tpm2","keyslots":["1"],"tpm2-blob":"AJ4AIMBxtI0/S0x21occJMIZwRZ9KOi5SIf4yQGYygl9ZpomABArtU1yvuwpX3rPiObRbIK9RtEq7wCVeyyMq0Ypelzlbfwm0vyd+V91BvOPIG9u9j7sLMpeceVjP1hZeGmOSpXs+I4/HdgIRvwfb+HWzRI64tTtFwsRygI81YWs2cqQe7aeAa6nS7IHXpBhhu0vRIUyLebnvYdsDILtGwBOAAgACwAAABIAILn+em79HJMEPdUt+n70PcX2ZK6csUzTnW83nsd+FNNxABAAIKrBamHwT3j8uSY8ycKBq6BT9zOpFZNhEntAOs5FesYc","tpm2-pcrs":[7],"tpm2-pcr-bank":"sha256","tpm2-primary-alg":"ecc","tpm2-policy-hash":"b9fe7a6efd1c93043dd52dfa7ef43dc5f664ae9cb14cd39d6f379ec77e14d371","tpm2-pin":false})";

// The real token with `edit` applied.
template <class F>
std::string token_with(F edit) {
    auto j = nlohmann::json::parse(kRealToken);
    edit(j);
    return j.dump();
}

}  // namespace

TEST_CASE("PCR banks", "[crypt][pcr]") {
    for (auto bank : {PcrBank::sha1, PcrBank::sha256, PcrBank::sha384, PcrBank::sha512})
        CHECK(parse_pcr_bank(to_string(bank)).value() == bank);
    CHECK(parse_pcr_bank("SHA256").value() == PcrBank::sha256);  // systemd compares any case
    CHECK(tpm_alg_id(PcrBank::sha1) == 0x0004);
    CHECK(tpm_alg_id(PcrBank::sha256) == 0x000B);
    CHECK(tpm_alg_id(PcrBank::sha384) == 0x000C);
    CHECK(tpm_alg_id(PcrBank::sha512) == 0x000D);
    CHECK(digest_size(PcrBank::sha1) == 20);
    CHECK(digest_size(PcrBank::sha256) == 32);
    CHECK(digest_size(PcrBank::sha384) == 48);
    CHECK(digest_size(PcrBank::sha512) == 64);
    auto bad = parse_pcr_bank("sha3");
    CHECK(bad.error().code() == Errc::invalid_argument);
    CHECK(bad.error().what() ==
          "'sha3' is not a PCR bank (expected sha1, sha256, sha384 or sha512)");
    CHECK_FALSE(parse_pcr_bank(""));
    CHECK_FALSE(parse_pcr_bank("sha2566"));
}

TEST_CASE("PCR lists as systemd spells them", "[crypt][pcr]") {
    CHECK(parse_pcr_list("7").value() == kMask7);
    CHECK(parse_pcr_list("7,14").value() == (kMask7 | 1u << 14));
    CHECK(parse_pcr_list("7+14").value() == (kMask7 | 1u << 14));
    CHECK(parse_pcr_list("0+7,14").value() == kMask0714);
    CHECK(parse_pcr_list(" 7 , 14 ").value() == (kMask7 | 1u << 14));
    CHECK(parse_pcr_list("7,7").value() == kMask7);
    CHECK(parse_pcr_list("0,23").value() == (1u | 1u << 23));
    CHECK(parse_pcr_list("").value() == 0);
    CHECK(parse_pcr_list("  ").value() == 0);

    CHECK(error_of(parse_pcr_list("7,24")) == "PCR list '7,24': '24' is not a PCR (0-23)");
    CHECK(error_of(parse_pcr_list("7,x")) == "PCR list '7,x': 'x' is not a PCR (0-23)");
    CHECK(error_of(parse_pcr_list("7,,14")) == "PCR list '7,,14': empty item");
    for (auto junk : {"7,", "+7", "-1", "7.0", "0x7", "7 14", "99999999999", "seven"}) {
        auto r = parse_pcr_list(junk);
        CHECK_FALSE(r);
        if (!r) CHECK(r.error().code() == Errc::invalid_argument);
    }

    CHECK(format_pcr_list(1u << 14 | kMask7) == "7,14");
    CHECK(format_pcr_list(kMask0714) == "0,7,14");
    CHECK(format_pcr_list(0) == "");
    CHECK(format_pcr_list(kMask7 | 1u << 24) == "7");  // not a PCR: ignored
    CHECK(pcr_indices(kMask0714) == std::vector<int>{0, 7, 14});
    CHECK(pcr_indices(kAllPcrs).size() == 24);
    CHECK(pcr_indices(0).empty());
    CHECK(pcr_indices(0xff000000u).empty());
    for (PcrMask m : {0u, kMask7, kMask0714, kAllPcrs})
        CHECK(parse_pcr_list(format_pcr_list(m)).value() == m);
}

TEST_CASE("policy digests match the TPM's", "[crypt][pcr][policy]") {
    std::vector<std::string> v7{kPcr7}, v0714{kPcr0, kPcr7, kPcr14};
    SECTION("PCR 7") {
        CHECK(hex(predict_policy(PcrBank::sha256, kMask7, v7, false)) ==
              "49be4b8b1836b776d40f9e35074980b0d79705c03c02be6f34aa64aa15db08be");
    }
    SECTION("PCR 7 and a PIN") {
        CHECK(hex(predict_policy(PcrBank::sha256, kMask7, v7, true)) ==
              "18c6afb37f431f780c01133869e4b9476d58290902f54890cafc3587ce87f12d");
    }
    SECTION("PCRs 0, 7 and 14") {
        CHECK(hex(predict_policy(PcrBank::sha256, kMask0714, v0714, false)) ==
              "268e92d3e772d87cce1b09970e84eba728bc9094be96b0b21451ffb3718a963f");
        CHECK(hex(predict_policy(PcrBank::sha256, kMask0714, v0714, true)) ==
              "7a967420acf73f7f18b9811f3200d7d8d960d6c3802f808a0b3f7ba683b61dd6");
    }
    SECTION("PCR 7 in the SHA-1 bank (the session still hashes with SHA-256)") {
        std::vector<std::string> sha1{kPcr7Sha1};
        CHECK(hex(predict_policy(PcrBank::sha1, kMask7, sha1, false)) ==
              "ae1326168740f99cffdb591f7f147d452eea38a725eec2f577656e6310098ec8");
    }
    SECTION("no PCRs, a PIN") {
        CHECK(hex(predict_policy(PcrBank::sha256, 0, {}, true)) ==
              "8fcd2169ab92694e0c633f1ab772842b8241bbc20288981fc7ac1eddc1fddb0e");
    }
    SECTION("no PCRs, no PIN: the empty policy") {
        CHECK(predict_policy(PcrBank::sha256, 0, {}, false) == Digest{});
    }
    SECTION("the steps compose") {
        CHECK(hex(predict_policy(PcrBank::sha256, kMask7, v7, true)) ==
              hex(policy_auth_value(policy_pcr(Digest{}, PcrBank::sha256, kMask7, v7).value())));
        CHECK(hex(policy_auth_value(Digest{})) ==
              "8fcd2169ab92694e0c633f1ab772842b8241bbc20288981fc7ac1eddc1fddb0e");
    }
    SECTION("values that do not fit the mask are refused, not digested") {
        CHECK(error_of(policy_pcr(Digest{}, PcrBank::sha256, kMask0714, v7)) ==
              "policy_pcr: one value per selected PCR is needed");
        CHECK(error_of(policy_pcr(Digest{}, PcrBank::sha1, kMask7, v7)) ==
              "policy_pcr: PCR value size does not match bank");
        CHECK(error_of(policy_pcr(Digest{}, PcrBank::sha256, kMask7 | 1u << 24, v7)) ==
              "policy_pcr: PCR mask has bits above PCR 23");
        CHECK(error_of(predict_policy(PcrBank::sha256, 0, v7, false)) ==
              "predict_policy: PCR values given without PCRs");
    }
}

TEST_CASE("PIN auth values, unsalted (systemd 252) and salted (253+)", "[crypt][pin]") {
    // Python: hashlib.sha256(b"1234"); for the salted one
    // hashlib.sha256(base64.b64encode(hashlib.pbkdf2_hmac("sha256", b"1234", bytes(range(32)),
    // 10000, 32))).
    auto unsalted = pin_auth_value("1234", std::nullopt).value();
    CHECK(unsalted.size() == 32);
    CHECK(to_hex({reinterpret_cast<const uint8_t*>(unsalted.data()), unsalted.size()}) ==
          "03ac674216f3e15c761ee1a5e255f067953623c8b388b4459e13f978d7c846f4");
    std::string salt;
    for (int i = 0; i < 32; ++i)
        salt += char(i);
    auto salted = pin_auth_value("1234", salt).value();
    CHECK(to_hex({reinterpret_cast<const uint8_t*>(salted.data()), salted.size()}) ==
          "707057c835474da74bcd75b848540fe2bbbf46d9d30a96b148814aecadeddedd");
    CHECK(pin_auth_value("1235", salt) != salted);
    CHECK(pin_auth_value("1234", std::string(32, 'x')) != salted);
}

TEST_CASE("primary key algorithms", "[crypt][token]") {
    CHECK(parse_primary_alg("ecc").value() == PrimaryAlg::ecc);
    CHECK(parse_primary_alg("RSA").value() == PrimaryAlg::rsa);  // systemd compares any case
    CHECK(to_string(PrimaryAlg::ecc) == "ecc");
    CHECK(to_string(PrimaryAlg::rsa) == "rsa");
    auto bad = parse_primary_alg("rsa2048");
    CHECK(bad.error().code() == Errc::invalid_argument);
    CHECK(bad.error().what() == "'rsa2048' is not a primary key algorithm (expected ecc or rsa)");
}

TEST_CASE("a token written by systemd-cryptenroll 252 round-trips", "[crypt][token]") {
    auto t = parse_tpm2_token(kRealToken);
    REQUIRE(t);
    CHECK(t->keyslot == 1);
    CHECK(t->pcrs == kMask7);
    CHECK(t->bank == PcrBank::sha256);
    CHECK(t->primary_alg == PrimaryAlg::ecc);
    CHECK(hex(t->policy_hash) ==
          "b9fe7a6efd1c93043dd52dfa7ef43dc5f664ae9cb14cd39d6f379ec77e14d371");
    CHECK_FALSE(t->pin);
    CHECK_FALSE(t->srk);
    CHECK_FALSE(t->salt);
    CHECK_FALSE(t->pubkey);
    // 00 9e <158-byte private> 00 4e <78-byte public>; the public area's authPolicy (after
    // type, nameAlg, attributes and its own size) is the policy hash.
    REQUIRE(t->blob.size() == 2 + 158 + 2 + 78);
    CHECK(t->blob.substr(0, 2) == std::string("\x00\x9e", 2));
    CHECK(t->blob.substr(160, 2) == std::string("\x00\x4e", 2));
    CHECK(t->blob.substr(172, 32) ==
          std::string(reinterpret_cast<const char*>(t->policy_hash.data()), 32));

    auto again = tpm2_token_json(*t).value();
    CHECK(again == kRealToken);  // systemd's field order and compact form, byte for byte
    CHECK(nlohmann::json::parse(again).dump() == nlohmann::json::parse(kRealToken).dump());
    CHECK(token_type(kRealToken).value() == "systemd-tpm2");
    CHECK(token_keyslot(kRealToken).value() == 1);
}

TEST_CASE("systemd-tpm2 tokens: optional and newer fields", "[crypt][token]") {
    SECTION("fields systemd < 250 did not write take their defaults") {
        auto t = parse_tpm2_token(token_with([](auto& j) {
            j.erase("tpm2-pin");
            j.erase("tpm2-pcr-bank");
            j.erase("tpm2-primary-alg");
        }));
        REQUIRE(t);
        CHECK_FALSE(t->pin);
        CHECK_FALSE(t->bank);
        CHECK(t->primary_alg == PrimaryAlg::ecc);
        // Written back with the bank systemd < 250 used.
        CHECK(tpm2_token_json(*t) == kRealToken);
    }
    SECTION("RSA primary, SHA-1 bank, PIN, several PCRs, keyslot 31") {
        auto t = parse_tpm2_token(token_with([](auto& j) {
            j["tpm2-primary-alg"] = "rsa";
            j["tpm2-pcr-bank"] = "sha1";
            j["tpm2-pin"] = true;
            j["tpm2-pcrs"] = {14, 0, 7};
            j["keyslots"] = {"31"};
            j["tpm2-policy-hash"] = std::string(64, 'A');
        }));
        REQUIRE(t);
        CHECK(t->primary_alg == PrimaryAlg::rsa);
        CHECK(t->bank == PcrBank::sha1);
        CHECK(t->pin);
        CHECK(t->pcrs == kMask0714);
        CHECK(t->keyslot == 31);
        CHECK(t->policy_hash == Digest{0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
                                       0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
                                       0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
                                       0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa});
        auto j = nlohmann::json::parse(tpm2_token_json(*t).value());
        CHECK(j["tpm2-pcrs"] == nlohmann::json({0, 7, 14}));
        CHECK(j["tpm2-policy-hash"] == std::string(64, 'a'));
        CHECK(j["tpm2-primary-alg"] == "rsa");
        CHECK(j["keyslots"] == nlohmann::json({"31"}));
    }
    SECTION("no PCRs") {
        auto t =
            parse_tpm2_token(token_with([](auto& j) { j["tpm2-pcrs"] = nlohmann::json::array(); }));
        REQUIRE(t);
        CHECK(t->pcrs == 0);
        CHECK(contains(tpm2_token_json(*t).value(), R"("tpm2-pcrs":[],)"));
    }
    SECTION("salt (253+) and SRK (254+) are read") {
        auto t = parse_tpm2_token(token_with([](auto& j) {
            j["tpm2_salt"] = base64_encode("0123456789abcdef0123456789abcdef");
            j["tpm2_srk"] = base64_encode("serialized ESYS_TR");
            j["tpm2_pcrlock"] = false;  // 256+ writes it on every token
        }));
        REQUIRE(t);
        CHECK(t->salt.value() == "0123456789abcdef0123456789abcdef");
        CHECK(t->srk.value() == "serialized ESYS_TR");
    }
    SECTION("a signed policy is read") {
        auto t = parse_tpm2_token(token_with([](auto& j) {
            j["tpm2_pubkey"] = base64_encode("-----BEGIN PUBLIC KEY-----\n...");
            j["tpm2_pubkey_pcrs"] = {11};
        }));
        REQUIRE(t);
        CHECK(t->pubkey == "-----BEGIN PUBLIC KEY-----\n...");
        CHECK(t->pubkey_pcrs == 1u << 11);
    }
    SECTION("one shard (systemd 257+) reads like the plain token") {
        auto t = parse_tpm2_token(token_with([](auto& j) {
            j["tpm2-blob"] = nlohmann::json::array({j["tpm2-blob"]});
            j["tpm2-policy-hash"] = nlohmann::json::array({j["tpm2-policy-hash"]});
        }));
        REQUIRE(t);
        CHECK(tpm2_token_json(*t) == kRealToken);
    }
}

TEST_CASE("systemd-tpm2 tokens: every malformed field is named", "[crypt][token][errors]") {
    struct Case {
        std::function<void(nlohmann::json&)> edit;
        std::string message;
        Errc code = Errc::parse;
    };
    using J = nlohmann::json;
    const std::vector<Case> cases = {
        {[](J& j) { j.erase("type"); }, "type: missing"},
        {[](J& j) { j["type"] = 1; }, "type: 1 is not a string"},
        {[](J& j) { j["type"] = "systemd-fido2"; }, R"(type: "systemd-fido2" is not systemd-tpm2)"},
        {[](J& j) { j.erase("keyslots"); }, "keyslots: missing"},
        {[](J& j) { j["keyslots"] = "1"; },
         R"(keyslots: "1" is not an array of one keyslot number as a string)"},
        {[](J& j) {
             j["keyslots"] = {"1", "2"};
         },
         R"(keyslots: ["1","2"] is not an array of one keyslot number as a string)"},
        {[](J& j) { j["keyslots"] = J::array(); },
         "keyslots: [] is not an array of one keyslot number as a string"},
        {[](J& j) { j["keyslots"] = {1}; },
         "keyslots: [1] is not an array of one keyslot number as a string"},
        {[](J& j) { j["keyslots"] = {"x"}; }, R"(keyslots: "x" is not a keyslot (0-31))"},
        {[](J& j) { j["keyslots"] = {"-1"}; }, R"(keyslots: "-1" is not a keyslot (0-31))"},
        {[](J& j) { j["keyslots"] = {"32"}; }, R"(keyslots: "32" is not a keyslot (0-31))"},
        {[](J& j) { j["keyslots"] = {"01"}; }, R"(keyslots: "01" is not a keyslot (0-31))"},
        {[](J& j) { j["keyslots"] = {""}; }, R"(keyslots: "" is not a keyslot (0-31))"},
        {[](J& j) { j.erase("tpm2-blob"); }, "tpm2-blob: missing"},
        {[](J& j) { j["tpm2-blob"] = 5; }, "tpm2-blob: 5 is not a string"},
        {[](J& j) { j["tpm2-blob"] = "AJ4A!"; }, "tpm2-blob: not non-empty standard base64"},
        {[](J& j) { j["tpm2-blob"] = ""; }, "tpm2-blob: not non-empty standard base64"},
        {[](J& j) { j["tpm2-blob"] = base64_encode("\xff\xfe"); },
         "tpm2-blob: not a marshalled TPM2B_PRIVATE followed by a TPM2B_PUBLIC"},
        {[](J& j) { j["tpm2-blob"] = "__4="; },  // the URL-safe spelling of the one above
         "tpm2-blob: not non-empty standard base64"},
        {[](J& j) { j["tpm2-blob"] = "AJ4AIMBx"; },  // the real blob's first 6 bytes
         "tpm2-blob: not a marshalled TPM2B_PRIVATE followed by a TPM2B_PUBLIC"},
        {[](J& j) { j["tpm2-blob"] = base64_encode(std::string("\x00\x01x\x00\x01yz", 7)); },
         "tpm2-blob: 1 bytes after the TPM2B_PUBLIC"},
        {[](J& j) { j["tpm2-blob"] = base64_encode(std::string("\x00\x01x\x00\x00", 5)); },
         "tpm2-blob: not a marshalled TPM2B_PRIVATE followed by a TPM2B_PUBLIC"},
        {[](J& j) { j.erase("tpm2-pcrs"); }, "tpm2-pcrs: missing"},
        {[](J& j) { j["tpm2-pcrs"] = "7"; }, R"(tpm2-pcrs: "7" is not an array of PCRs)"},
        {[](J& j) { j["tpm2-pcrs"] = {24}; }, "tpm2-pcrs: 24 is not a PCR (0-23)"},
        {[](J& j) { j["tpm2-pcrs"] = {-1}; }, "tpm2-pcrs: -1 is not a PCR (0-23)"},
        {[](J& j) { j["tpm2-pcrs"] = {7.0}; }, "tpm2-pcrs: 7.0 is not a PCR (0-23)"},
        {[](J& j) { j["tpm2-pcrs"] = {"7"}; }, R"(tpm2-pcrs: "7" is not a PCR (0-23))"},
        {[](J& j) { j["tpm2-pcr-bank"] = "md5"; },
         "tpm2-pcr-bank: 'md5' is not a PCR bank (expected sha1, sha256, sha384 or sha512)",
         Errc::invalid_argument},
        {[](J& j) { j["tpm2-pcr-bank"] = 11; }, "tpm2-pcr-bank: 11 is not a string"},
        {[](J& j) { j["tpm2-primary-alg"] = "ed25519"; },
         "tpm2-primary-alg: 'ed25519' is not a primary key algorithm (expected ecc or rsa)",
         Errc::invalid_argument},
        {[](J& j) { j["tpm2-primary-alg"] = nullptr; }, "tpm2-primary-alg: null is not a string"},
        {[](J& j) { j.erase("tpm2-policy-hash"); }, "tpm2-policy-hash: missing"},
        {[](J& j) { j["tpm2-policy-hash"] = "b9fe"; },
         "tpm2-policy-hash: not 64 hex digits (a SHA-256 policy digest)"},
        {[](J& j) { j["tpm2-policy-hash"] = std::string(63, 'a') + "g"; },
         "tpm2-policy-hash: not 64 hex digits (a SHA-256 policy digest)"},
        {[](J& j) { j["tpm2-policy-hash"] = std::string(96, 'a'); },
         "tpm2-policy-hash: not 64 hex digits (a SHA-256 policy digest)"},
        {[](J& j) { j["tpm2-pin"] = "false"; }, R"(tpm2-pin: "false" is not true or false)"},
        {[](J& j) { j["tpm2-pin"] = 0; }, "tpm2-pin: 0 is not true or false"},
        {[](J& j) { j["tpm2_salt"] = ""; }, "tpm2_salt: not non-empty standard base64"},
        {[](J& j) { j["tpm2_salt"] = "%%%%"; }, "tpm2_salt: not non-empty standard base64"},
        {[](J& j) { j["tpm2_srk"] = true; }, "tpm2_srk: true is not a string"},
        {[](J& j) { j["tpm2_pubkey"] = "-----BEGIN"; },
         "tpm2_pubkey: not non-empty standard base64"},
        {[](J& j) { j["tpm2_pubkey_pcrs"] = {11}; },
         "tpm2_pubkey_pcrs: set, but tpm2_pubkey is missing"},
        {[](J& j) { j["tpm2_pubkey_pcrs"] = {25}; }, "tpm2_pubkey_pcrs: 25 is not a PCR (0-23)"},
        {[](J& j) { j["tpm2_pcrlock"] = 1; }, "tpm2_pcrlock: 1 is not true or false"},
        {[](J& j) { j["tpm2_pcrlock"] = true; },
         "tpm2_pcrlock: pcrlock policies (systemd 255+) are not supported", Errc::unsupported},
        {[](J& j) { j["tpm2_pcrlock_nv"] = "AAAA"; },
         "tpm2_pcrlock_nv: pcrlock policies (systemd 255+) are not supported", Errc::unsupported},
        {[](J& j) { j["tpm2_argon2id_memcost"] = 65536; },
         "tpm2_argon2id_memcost: Argon2id PINs (newer systemd) are not supported",
         Errc::unsupported},
        {[](J& j) { j["tpm2_future"] = 1; },
         "tpm2_future: unknown field (written by a newer systemd?)", Errc::unsupported},
        {[](J& j) {
             j["tpm2-blob"] = {j["tpm2-blob"], j["tpm2-blob"]};
         },
         "tpm2-blob: 2 shards: written by systemd 257+, not supported", Errc::unsupported},
        {[](J& j) { j["tpm2-policy-hash"] = J::array(); },
         "tpm2-policy-hash: 0 shards: written by systemd 257+, not supported", Errc::unsupported},
        {[](J& j) { j["tpm2-blob"] = {1}; }, "tpm2-blob: 1 is not a string"},
    };
    for (const auto& c : cases) {
        auto r = parse_tpm2_token(token_with(c.edit));
        INFO(c.message);
        REQUIRE_FALSE(r);
        CHECK(r.error().what() == c.message);
        CHECK(r.error().code() == c.code);
    }
    CHECK(error_of(parse_tpm2_token("")) == "token is not valid JSON");
    CHECK(error_of(parse_tpm2_token("{\"type\":")) == "token is not valid JSON");
    CHECK(error_of(parse_tpm2_token("[]")) == "token is not a JSON object");
    // Values quoted from a token stay short.
    auto long_type =
        parse_tpm2_token(token_with([](J& j) { j["keyslots"] = std::string(500, 'k'); }));
    CHECK(long_type.error().what().size() < 120);
}

TEST_CASE("systemd-tpm2 tokens: what Ballast refuses to write", "[crypt][token][errors]") {
    auto t = parse_tpm2_token(kRealToken).value();
    for (int bad : {-1, 32}) {
        auto u = t;
        u.keyslot = bad;
        CHECK(tpm2_token_json(u).error().code() == Errc::invalid_argument);
    }
    auto salted = t;
    salted.salt = "salt";
    CHECK(tpm2_token_json(salted).error().code() == Errc::invalid_argument);
    auto srk = t;
    srk.srk = "srk";
    CHECK(tpm2_token_json(srk).error().code() == Errc::invalid_argument);
    auto empty = t;
    empty.blob.clear();
    CHECK(tpm2_token_json(empty).error().code() == Errc::invalid_argument);
}

TEST_CASE("systemd-recovery tokens and the keyslot rule", "[crypt][token]") {
    auto json = recovery_token_json(3).value();
    CHECK(json == R"({"type":"systemd-recovery","keyslots":["3"]})");
    CHECK(token_type(json).value() == "systemd-recovery");
    CHECK(token_keyslot(json).value() == 3);
    CHECK(token_keyslot(recovery_token_json(0).value()).value() == 0);
    CHECK(error_of(recovery_token_json(-1)) == "LUKS2 token: keyslot -1 is not 0-31");
    CHECK(error_of(recovery_token_json(32)) == "LUKS2 token: keyslot 32 is not 0-31");

    // The same keyslot rule for every token type.
    CHECK(token_keyslot(R"({"type":"clevis","keyslots":["2"]})").value() == 2);
    CHECK(error_of(token_keyslot(R"({"type":"clevis","keyslots":["2","3"]})")) ==
          R"(keyslots: ["2","3"] is not an array of one keyslot number as a string)");
    CHECK(error_of(token_keyslot(R"({"type":"clevis"})")) == "keyslots: missing");
    CHECK(error_of(token_keyslot(R"({"keyslots":[" 2"]})")) ==
          R"(keyslots: " 2" is not a keyslot (0-31))");
    CHECK(error_of(token_keyslot("nope")) == "token is not valid JSON");
    CHECK(error_of(token_type(R"({"keyslots":["2"]})")) == "type: missing");
    CHECK(error_of(token_type(R"({"type":["x"]})")) == R"(type: ["x"] is not a string)");
    CHECK(error_of(token_type("7")) == "token is not a JSON object");
}

TEST_CASE("recovery keys", "[crypt][recovery]") {
    auto is_modhex = [](char c) {
        return std::string_view("cbdefghijklnrtuv").find(c) != std::string_view::npos;
    };
    SECTION("made from fresh random bytes, in systemd's shape") {
        auto a = make_recovery_key(), b = make_recovery_key();
        REQUIRE(a);
        REQUIRE(b);
        CHECK(*a != *b);
        REQUIRE(a->size() == 71);
        for (size_t i = 0; i < a->size(); ++i) {
            if (i % 9 == 8)
                CHECK((*a)[i] == '-');
            else
                CHECK(is_modhex((*a)[i]));
        }
        CHECK(normalize_recovery_key(*a).value() == *a);
    }
    SECTION("high nibble first, like systemd's make_recovery_key") {
        std::array<uint8_t, 32> key{};
        for (size_t i = 0; i < key.size(); ++i)
            key[i] = uint8_t(0x01 + 0x22 * (i % 8));
        // 01 23 45 67 89 ab cd ef, four times
        CHECK(format_recovery_key(key) ==
              "cbdefghi-jklnrtuv-cbdefghi-jklnrtuv-cbdefghi-jklnrtuv-cbdefghi-jklnrtuv");
        std::array<uint8_t, 32> zeros{}, ones{};
        ones.fill(0xff);
        CHECK(format_recovery_key(zeros) ==
              "cccccccc-cccccccc-cccccccc-cccccccc-cccccccc-cccccccc-cccccccc-cccccccc");
        CHECK(format_recovery_key(ones) ==
              "vvvvvvvv-vvvvvvvv-vvvvvvvv-vvvvvvvv-vvvvvvvv-vvvvvvvv-vvvvvvvv-vvvvvvvv");
    }
    SECTION("typed the way people type it") {
        const std::string canonical =
            "cbdefghi-jklnrtuv-cbdefghi-jklnrtuv-cbdefghi-jklnrtuv-cbdefghi-jklnrtuv";
        std::string upper = canonical;
        std::ranges::transform(upper, upper.begin(), [](char c) { return char(std::toupper(c)); });
        std::string undashed = canonical;
        std::erase(undashed, '-');
        CHECK(normalize_recovery_key(canonical).value() == canonical);
        CHECK(normalize_recovery_key(upper).value() == canonical);
        CHECK(normalize_recovery_key(undashed).value() == canonical);
        CHECK(normalize_recovery_key(" \t" + upper + "\n").value() == canonical);
    }
    SECTION("anything else is refused without echoing the input") {
        const std::string key =
            "cbdefghi-jklnrtuv-cbdefghi-jklnrtuv-cbdefghi-jklnrtuv-cbdefghi-jklnrtuv";
        std::string wrong_letter = key;
        wrong_letter[3] = 'a';
        std::string misplaced_dash = key;
        std::swap(misplaced_dash[7], misplaced_dash[8]);
        std::string dashes_undashed_length = key.substr(0, 64);
        std::string inner_space = key;
        inner_space[8] = ' ';
        const std::vector<std::pair<std::string, std::string>> cases = {
            {"", "0 characters"},
            {key.substr(1), "70 characters"},
            {key + "c", "72 characters"},
            {wrong_letter, "character 4 is not a modhex letter"},
            {misplaced_dash, "character 8 is not a modhex letter"},
            {dashes_undashed_length, "character 9 is not a modhex letter"},
            {inner_space, "no '-' at position 9"},
        };
        for (const auto& [typed, why] : cases) {
            auto r = normalize_recovery_key(typed);
            INFO(why);
            REQUIRE_FALSE(r);
            CHECK(r.error().code() == Errc::invalid_argument);
            CHECK(r.error().what() ==
                  "not a recovery key: " + why +
                      " (expected 64 letters of cbdefghijklnrtuv, optionally in 8 groups of 8 "
                      "joined by '-')");
            CHECK_FALSE(contains(r.error().what(), "cbdefghi-"));
            CHECK_FALSE(contains(r.error().what(), "jklnrtuv-"));
        }
    }
}
