#include "ballast/update/manifest.hpp"
#include "ballast/core/json.hpp"
#include "ballast/core/text.hpp"

#include <algorithm>
#include <set>

namespace ballast::update {
namespace {

bool printable(const std::string& s, size_t max) {
    return !s.empty() && s.size() <= max &&
           std::all_of(s.begin(), s.end(), [](unsigned char c) { return c >= 0x20 && c < 0x7f; });
}

bool lower_hex(const std::string& s, size_t min, size_t max) {
    return s.size() >= min && s.size() <= max && s.size() % 2 == 0 &&
           s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

// The tree must be the image's exact tail, so that the signed image digest covers it and the
// slot holds nothing unverified after the data.
Result<crypt::Verity> parse_verity(const nlohmann::json& x, uint64_t image_size) {
    if (!x.is_object()) return fail(Errc::parse, "manifest.json: 'verity' must be an object");
    static const std::set<std::string> keys = {"root_hash", "salt", "uuid", "data_blocks",
                                               "hash_offset"};
    for (const auto& [k, v] : x.items())
        if (!keys.count(k)) return fail(Errc::parse, "manifest.json: unknown field 'verity.{}'", k);
    crypt::Verity v;
    auto text = [&](const char* k, std::string& out) {
        auto it = x.find(k);
        if (it == x.end() || !it->is_string()) return false;
        out = it->get<std::string>();
        return true;
    };
    auto number = [&](const char* k, uint64_t& out) {
        auto it = x.find(k);
        if (it == x.end() || !it->is_number_unsigned()) return false;
        out = it->get<uint64_t>();
        return true;
    };
    if (!text("root_hash", v.root_hash) || !lower_hex(v.root_hash, 64, 64))
        return fail(Errc::parse,
                    "manifest.json: verity.root_hash must be 64 lower-case hex digits");
    if (!text("salt", v.salt) || !lower_hex(v.salt, 2, 512))
        return fail(Errc::parse,
                    "manifest.json: verity.salt must be 2 to 512 lower-case hex digits");
    if (!text("uuid", v.uuid) || !printable(v.uuid, 36))
        return fail(Errc::parse, "manifest.json: verity.uuid must be a UUID");
    if (!number("data_blocks", v.data_blocks) || v.data_blocks == 0 ||
        v.data_blocks > (uint64_t(1) << 40))
        return fail(Errc::parse, "manifest.json: verity.data_blocks must be a positive number");
    if (!number("hash_offset", v.hash_offset) || v.hash_offset % crypt::kVerityBlock ||
        v.hash_offset < v.data_blocks * crypt::kVerityBlock || v.hash_offset > image_size ||
        image_size - v.hash_offset != crypt::verity_hash_size(v.data_blocks))
        return fail(Errc::parse,
                    "manifest.json: verity.hash_offset must put the hash tree of {} blocks at "
                    "the image's end ({} bytes)",
                    v.data_blocks, image_size);
    return v;
}

}  // namespace

nlohmann::json Manifest::to_json() const {
    nlohmann::json j = {{"format", format},
                        {"os_name", os_name},
                        {"version", version},
                        {"compatible", compatible},
                        {"image",
                         {{"file", image.file},
                          {"size", image.size},
                          {"sha256", image.sha256},
                          {"fstype", image.fstype}}},
                        {"created", created}};
    if (index)
        j["index"] = {{"file", index->file}, {"size", index->size}, {"sha256", index->sha256}};
    if (uki) j["uki"] = {{"file", uki->file}, {"size", uki->size}, {"sha256", uki->sha256}};
    if (verity)
        j["verity"] = {{"root_hash", verity->root_hash},
                       {"salt", verity->salt},
                       {"uuid", verity->uuid},
                       {"data_blocks", verity->data_blocks},
                       {"hash_offset", verity->hash_offset}};
    return j;
}

std::string serialize_manifest(const Manifest& m) {
    return json_text(m.to_json(), 2) + "\n";
}

bool names_root_hash(std::string_view key) {
    // systemd strips "rd." in the initrd and reads '-' and '_' alike.
    std::string k(key.starts_with("rd.") ? key.substr(3) : key);
    std::ranges::replace(k, '-', '_');
    return k == "ballast.roothash" || k == "ballast.verity_offset" || k == "roothash" ||
           k == "usrhash" || k.starts_with("systemd.verity");
}

std::string uki_root_hash_words(const crypt::Verity& v) {
    return fmt::format("ballast.roothash={} ballast.verity_offset={}", v.root_hash, v.hash_offset);
}

Result<Manifest> parse_manifest(std::string_view text) {
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object())
        return fail(Errc::parse, "manifest.json is not a JSON object");
    static const std::set<std::string> top = {"format", "os_name", "version", "compatible", "image",
                                              "index",  "verity",  "uki",     "created"};
    static const std::set<std::string> img = {"file", "size", "sha256", "fstype"};
    for (const auto& [k, v] : j.items())
        if (!top.count(k)) return fail(Errc::parse, "manifest.json: unknown field '{}'", k);
    auto str = [&](const nlohmann::json& o, const char* k, size_t max, std::string& out) -> Status {
        auto it = o.find(k);
        if (it == o.end() || !it->is_string() || !printable(it->get<std::string>(), max))
            return fail(Errc::parse,
                        "manifest.json: '{}' must be a printable string of at most {} characters",
                        k, max);
        out = it->get<std::string>();
        return {};
    };
    Manifest m;
    if (!j.contains("format") || !j["format"].is_number_integer())
        return fail(Errc::parse, "manifest.json: 'format' must be a number");
    // Compared as read: get<int>() would wrap 4294967297 to 1.
    if (const auto format = j["format"].get<int64_t>(); format != kManifestFormat)
        return fail(Errc::unsupported,
                    "manifest.json: format {} is not supported (this agent reads {})", format,
                    kManifestFormat);
    m.format = kManifestFormat;
    BALLAST_TRY(str(j, "os_name", 64, m.os_name));
    BALLAST_TRY(str(j, "version", 64, m.version));
    BALLAST_TRY(str(j, "compatible", 128, m.compatible));
    BALLAST_TRY(str(j, "created", 64, m.created));
    if (!j.contains("image") || !j["image"].is_object())
        return fail(Errc::parse, "manifest.json: 'image' must be an object");
    const auto& i = j["image"];
    for (const auto& [k, v] : i.items())
        if (!img.count(k)) return fail(Errc::parse, "manifest.json: unknown field 'image.{}'", k);
    // A member of the bundle: a plain file name, a size and a digest.
    auto member = [&](const nlohmann::json& o, const char* what, std::string& file, uint64_t& size,
                      std::string& sha256) -> Status {
        BALLAST_TRY(str(o, "file", 128, file));
        if (file.find('/') != std::string::npos || file == "." || file == ".." ||
            file == "manifest.json" || file == "manifest.json.sig")
            return fail(Errc::parse, "manifest.json: {}.file '{}' must be a plain file name", what,
                        file);
        if (!o.contains("size") || !o["size"].is_number_unsigned() ||
            o["size"].get<uint64_t>() == 0)
            return fail(Errc::parse, "manifest.json: {}.size must be a positive number", what);
        size = o["size"].get<uint64_t>();
        BALLAST_TRY(str(o, "sha256", 64, sha256));
        if (!is_sha256_hex(sha256))
            return fail(Errc::parse, "manifest.json: {}.sha256 must be 64 lower-case hex digits",
                        what);
        return {};
    };
    BALLAST_TRY(member(i, "image", m.image.file, m.image.size, m.image.sha256));
    BALLAST_TRY(str(i, "fstype", 16, m.image.fstype));
    if (m.image.fstype != "squashfs" && m.image.fstype != "erofs")
        return fail(Errc::parse, "manifest.json: image.fstype '{}' is not squashfs or erofs",
                    m.image.fstype);
    // index and uki: optional members, each under its own name.
    auto optional_member = [&](const char* what) -> Result<std::optional<Manifest::Member>> {
        if (!j.contains(what)) return std::nullopt;
        const auto& x = j[what];
        if (!x.is_object()) return fail(Errc::parse, "manifest.json: '{}' must be an object", what);
        for (const auto& [k, v] : x.items())
            if (k != "file" && k != "size" && k != "sha256")
                return fail(Errc::parse, "manifest.json: unknown field '{}.{}'", what, k);
        Manifest::Member f;
        BALLAST_TRY(member(x, what, f.file, f.size, f.sha256));
        if (f.file == m.image.file)
            return fail(Errc::parse, "manifest.json: {}.file '{}' is the image's name", what,
                        f.file);
        return f;
    };
    m.index = BALLAST_TRY(optional_member("index"));
    m.uki = BALLAST_TRY(optional_member("uki"));
    if (j.contains("verity")) m.verity = BALLAST_TRY(parse_verity(j["verity"], m.image.size));
    if (m.uki) {
        if (m.index && m.index->file == m.uki->file)
            return fail(Errc::parse, "manifest.json: uki.file '{}' is the index's name",
                        m.uki->file);
        if (m.uki->size > kMaxUkiSize)
            return fail(Errc::parse,
                        "manifest.json: uki.size {} is over {} MiB: two must fit the ESP",
                        m.uki->size, kMaxUkiSize >> 20);
        if (!m.verity)
            return fail(Errc::parse,
                        "manifest.json: a 'uki' needs 'verity': its command line carries the "
                        "image's root hash");
    }
    return m;
}

}  // namespace ballast::update
