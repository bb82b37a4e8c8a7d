#include "ballast/crypt/pcr_signature.hpp"

#include <algorithm>

#include "ballast/core/encoding.hpp"
#include "ballast/core/json.hpp"
#include "ballast/crypt/json_fields.hpp"

namespace ballast::crypt {
namespace {

using namespace jf;

constexpr size_t kMaxEntries = 4096;

Result<PcrSignature> read_entry(const Json& e, PcrBank bank, const std::string& where) {
    if (!e.is_object()) return fail(Errc::parse, "{}: {} is not an object", where, shown(e));
    auto named = [&](std::string_view name) { return fmt::format("{}.{}", where, name); };
    auto field = [&](std::string_view name) { return required(e, named(name), name); };
    PcrSignature s;
    s.bank = bank;
    const Json* pcrs = BALLAST_TRY(field("pcrs"));
    const Json* pkfp = BALLAST_TRY(field("pkfp"));
    const Json* pol = BALLAST_TRY(field("pol"));
    const Json* sig = BALLAST_TRY(field("sig"));
    s.pcrs = BALLAST_TRY(pcr_array(*pcrs, named("pcrs")));
    s.key_fingerprint =
        BALLAST_TRY(digest_field(*pkfp, named("pkfp"), "a SHA-256 key fingerprint"));
    s.policy = BALLAST_TRY(digest_field(*pol, named("pol"), "a SHA-256 policy digest"));
    s.signature = BALLAST_TRY(base64_field(*sig, named("sig")));
    return s;
}

}  // namespace

Result<std::vector<PcrSignature>> parse_pcr_signatures(std::string_view json,
                                                       std::string_view what) {
    if (json.size() > kMaxPcrSignatureFile)
        return fail(Errc::parse, "{}: {} bytes, more than a PCR signature file holds (1 MiB)", what,
                    json.size());
    auto j = Json::parse(json, nullptr, false);
    if (j.is_discarded()) return fail(Errc::parse, "{}: not valid JSON", what);
    if (!j.is_object()) return fail(Errc::parse, "{}: not a JSON object", what);
    std::vector<PcrSignature> out;
    for (PcrBank bank : kPcrBanks) {
        const Json* entries = member(j, to_string(bank));
        if (!entries) continue;
        if (!entries->is_array())
            return fail(Errc::parse, "{}: {}: {} is not an array", what, to_string(bank),
                        shown(*entries));
        for (size_t i = 0; i < entries->size(); ++i) {
            if (out.size() == kMaxEntries)
                return fail(Errc::parse, "{}: more than {} signatures", what, kMaxEntries);
            auto where = fmt::format("{}[{}]", to_string(bank), i);
            auto entry = read_entry((*entries)[i], bank, where);
            if (!entry) return std::unexpected(std::move(entry).error().context(std::string(what)));
            out.push_back(std::move(*entry));
        }
    }
    return out;
}

const PcrSignature* find_pcr_signature(std::span<const PcrSignature> all, PcrBank bank,
                                       PcrMask pcrs, const Digest& key_fingerprint,
                                       const Digest& policy) {
    auto it = std::ranges::find_if(all, [&](const PcrSignature& s) {
        return s.bank == bank && s.pcrs == pcrs && s.key_fingerprint == key_fingerprint &&
               s.policy == policy;
    });
    return it == all.end() ? nullptr : &*it;
}

std::string pcr_signatures_json(std::span<const PcrSignature> all) {
    nlohmann::ordered_json j = nlohmann::ordered_json::object();
    for (const PcrSignature& s : all) {
        auto& bank = j[std::string(to_string(s.bank))];
        if (bank.is_null()) bank = nlohmann::ordered_json::array();
        nlohmann::ordered_json e;
        e["pcrs"] = pcr_indices(s.pcrs);
        e["pkfp"] = to_hex(s.key_fingerprint);
        e["pol"] = to_hex(s.policy);
        e["sig"] = base64_encode(s.signature);
        bank.push_back(std::move(e));
    }
    return json_text(j);
}

}  // namespace ballast::crypt
