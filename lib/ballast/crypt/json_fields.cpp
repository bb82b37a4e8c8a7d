#include "ballast/crypt/json_fields.hpp"

#include <algorithm>

#include "ballast/core/encoding.hpp"
#include "ballast/core/json.hpp"

namespace ballast::crypt::jf {

std::string shown(const Json& v) {
    auto text = json_text(v);
    return text.size() > 40 ? text.substr(0, 37) + "..." : text;
}

const Json* member(const Json& obj, std::string_view key) {
    auto it = obj.find(std::string(key));
    return it == obj.end() ? nullptr : &*it;
}

Result<const Json*> required(const Json& obj, std::string_view field, std::string_view key) {
    const auto* v = member(obj, key.empty() ? field : key);
    if (!v) return fail(Errc::parse, "{}: missing", field);
    return v;
}

Result<PcrMask> pcr_array(const Json& v, std::string_view field) {
    if (!v.is_array()) return fail(Errc::parse, "{}: {} is not an array of PCRs", field, shown(v));
    PcrMask mask = 0;
    for (const auto& e : v) {
        if (!e.is_number_unsigned() || e.get<uint64_t>() >= uint64_t(kPcrCount))
            return fail(Errc::parse, "{}: {} is not a PCR (0-{})", field, shown(e), kPcrCount - 1);
        mask |= PcrMask{1} << e.get<unsigned>();
    }
    return mask;
}

Result<const std::string*> string_field(const Json& v, std::string_view field) {
    if (!v.is_string()) return fail(Errc::parse, "{}: {} is not a string", field, shown(v));
    return &v.get_ref<const std::string&>();
}

Result<std::string> base64_field(const Json& v, std::string_view field) {
    const auto* text = BALLAST_TRY(string_field(v, field));
    auto raw = base64_decode(*text);
    if (!raw || raw->empty() || base64_encode(*raw) != *text)
        return fail(Errc::parse, "{}: not non-empty standard base64", field);
    return std::move(*raw);
}

Result<Digest> digest_field(const Json& v, std::string_view field, std::string_view what) {
    const auto* text = BALLAST_TRY(string_field(v, field));
    Digest d{};
    const auto raw = from_hex(*text);
    if (!raw || raw->size() != d.size())
        return fail(Errc::parse, "{}: not 64 hex digits ({})", field, what);
    std::copy(raw->begin(), raw->end(), d.begin());
    return d;
}

Result<bool> bool_field(const Json& v, std::string_view field) {
    if (!v.is_boolean()) return fail(Errc::parse, "{}: {} is not true or false", field, shown(v));
    return v.get<bool>();
}

}  // namespace ballast::crypt::jf
