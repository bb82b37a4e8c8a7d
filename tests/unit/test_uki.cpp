// boot/uki: PE headers and section tables, and the PCR 11 systemd-stub 252 leaves, on hand-made
// images.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "ballast/boot/authenticode.hpp"
#include "ballast/boot/secure_boot.hpp"
#include "ballast/boot/uki.hpp"
#include "ballast/core/bytes.hpp"
#include "ballast/core/encoding.hpp"
#include "ballast/core/sha256.hpp"

using namespace ballast;
using namespace ballast::boot;

namespace {

struct Sec {
    std::string name, data;
    uint32_t virtual_size = 0;  // 0: the data's size
    uint32_t raw_offset = 0;    // 0: where the data is put
};

constexpr size_t kOptional = 0x40 + 4 + 20;

// MZ header, PE signature, COFF header, a PE32+ optional header (magic, ImageBase,
// SectionAlignment), the section table, the data.
std::string pe(const std::vector<Sec>& secs, uint16_t magic = 0x20b) {
    std::string out = "MZ";
    out.resize(0x3c, '\0');
    put_le<uint32_t>(out, 0x40);
    out += std::string("PE\0\0", 4);
    put_le<uint16_t>(out, 0x8664);
    put_le<uint16_t>(out, uint16_t(secs.size()));
    put_le<uint32_t>(out, 0);
    put_le<uint32_t>(out, 0);
    put_le<uint32_t>(out, 0);
    put_le<uint16_t>(out, 112);  // SizeOfOptionalHeader: no data directories
    put_le<uint16_t>(out, 0x22);
    std::string optional;
    put_le<uint16_t>(optional, magic);
    optional.resize(24, '\0');
    put_le<uint64_t>(optional, 0x140000000);  // ImageBase
    put_le<uint32_t>(optional, 0x1000);       // SectionAlignment
    optional.resize(112, '\0');
    out += optional;
    size_t data_at = out.size() + 40 * secs.size();
    std::string data;
    uint32_t va = 0x1000;
    for (const Sec& s : secs) {
        std::string name = s.name;
        name.resize(8, '\0');
        out += name;
        put_le<uint32_t>(out, s.virtual_size ? s.virtual_size : uint32_t(s.data.size()));
        put_le<uint32_t>(out, va);
        put_le<uint32_t>(out, uint32_t(s.data.size()));
        put_le<uint32_t>(out, s.raw_offset ? s.raw_offset : uint32_t(data_at + data.size()));
        out += std::string(16, '\0');
        data += s.data;
        va += 0x1000;
    }
    return out + data;
}

std::string sha(std::string_view s) {
    auto d = sha256_digest(s).value();
    return {reinterpret_cast<const char*>(d.data()), d.size()};
}

std::vector<UkiSection> measured(const std::string& image) {
    auto p = pe_image(image, "u.efi");
    REQUIRE(p);
    return uki_sections(image, *p, "u.efi").value();
}

}  // namespace

TEST_CASE("UKI sections come out in the stub's order, as loaded", "[boot][uki]") {
    // In the file: out of order, a section the stub does not measure, a padded one.
    std::string image = pe({{".text", "code"},
                            {".cmdline", "ro quiet"},
                            {".linux", "kernel"},
                            {".osrel", "ID=x\n", 8},
                            {".pcrsig", "{}"}});
    auto p = pe_image(image, "u.efi");
    REQUIRE(p);
    CHECK(p->image_base == 0x140000000);
    CHECK(p->section_alignment == 0x1000);
    REQUIRE(p->sections.size() == 5);
    CHECK(p->sections[1].name == ".cmdline");
    CHECK(p->sections[1].virtual_address == 0x2000);
    auto m = measured(image);
    REQUIRE(m.size() == 3);
    CHECK(m[0].name == ".linux");
    CHECK(m[1].name == ".osrel");
    CHECK(m[1].data == "ID=x\n");
    CHECK(m[1].zeros == 3);  // zero-filled to VirtualSize
    CHECK(m[2].name == ".cmdline");

    // PCR 11 by hand: extend(H(name\0)), extend(H(bytes)) per section, then the phase word.
    std::string pcr(32, '\0');
    auto extend = [&](std::string_view d) { pcr = sha(pcr + sha(d)); };
    extend(std::string(".linux\0", 7));
    extend("kernel");
    extend(std::string(".osrel\0", 7));
    extend(std::string("ID=x\n\0\0\0", 8));
    extend(std::string(".cmdline\0", 9));
    extend("ro quiet");
    extend("enter-initrd");
    const std::vector<std::string> phases{"enter-initrd"};
    auto predicted = predict_pcr11(m, phases).value();
    CHECK(std::string(predicted.begin(), predicted.end()) == pcr);
    CHECK(predict_pcr11(m, {}).value() != predicted);
}

TEST_CASE("UKI sections are found as systemd-stub 252 finds them", "[boot][uki]") {
    // By prefix, the last match winning: .linuxZ is the kernel the stub measures. (The
    // sections are views into the image, which must outlive them.)
    const std::string two = pe({{".linux", "first"}, {".linuxZ", "second"}});
    auto m = measured(two);
    REQUIRE(m.size() == 1);
    CHECK(m[0].name == ".linux");
    CHECK(m[0].data == "second");
    // A VirtualSize of 0 is "not found".
    const std::string empty = pe({{".osrel", ""}, {".cmdline", ""}});
    CHECK(measured(empty).empty());
    // VirtualSize below the raw size: only that much is measured.
    const std::string short_virtual = pe({{".cmdline", "ro quiet", 2}});
    auto cut = measured(short_virtual);
    REQUIRE(cut.size() == 1);
    CHECK(cut[0].data == "ro");
    CHECK(cut[0].zeros == 0);
    // No raw data (a bss-like section), whatever its file offset says: all zeros.
    const std::string no_raw = pe({{".initrd", "", 16, 0xfffffff0}});
    auto bss = measured(no_raw);
    REQUIRE(bss.size() == 1);
    CHECK(bss[0].data.empty());
    CHECK(bss[0].zeros == 16);
}

TEST_CASE("the stub's version from .sdmagic", "[boot][uki]") {
    const std::string magic = "#### LoaderInfo: systemd-stub 252.39-1~deb12u2 ####";
    std::string image = pe({{".sdmagic", magic}, {".linux", "k"}});
    auto p = pe_image(image, "u.efi").value();
    CHECK(stub_version(image, p) == "systemd-stub 252.39-1~deb12u2");
    CHECK(predictable_stub(stub_version(image, p)));
    CHECK_FALSE(predictable_stub("systemd-stub 254.26-1~bpo12+1"));
    std::string none = pe({{".linux", "k"}});
    CHECK(stub_version(none, pe_image(none, "u.efi").value()).empty());
    CHECK_FALSE(predictable_stub(""));
}

TEST_CASE("UKI and PE images: what is refused", "[boot][uki][errors]") {
    auto error = [](const std::string& image) {
        auto r = pe_image(image, "u.efi");
        REQUIRE_FALSE(r);
        CHECK(r.error().code() == Errc::parse);
        return r.error().what();
    };
    CHECK(error("") == "u.efi: not a PE image (no MZ header)");
    CHECK(error(std::string(100, 'x')) == "u.efi: not a PE image (no MZ header)");
    std::string good = pe({{".linux", "kernel"}});
    std::string bad_sig = good;
    bad_sig[0x41] = 'X';
    CHECK(error(bad_sig) == "u.efi: not a PE image (no PE signature)");
    std::string far = good;
    far[0x3c] = char(0xff);
    far[0x3d] = char(0xff);
    CHECK(error(far) == "u.efi: not a PE image (no PE signature)");
    CHECK(error(pe({{".linux", "k"}}, 0x107)) ==
          "u.efi: not a PE32 or PE32+ image (optional header magic 0x107)");
    std::string no_optional = good;
    no_optional[0x40 + 4 + 16] = 0;  // SizeOfOptionalHeader
    CHECK(error(no_optional) == "u.efi: not a PE image (no optional header)");
    CHECK(error(pe({})) == "u.efi: 0 sections (1-96 expected)");
    std::string many = good;
    many[0x46] = char(200);
    CHECK(error(many) == "u.efi: 200 sections (1-96 expected)");
    CHECK(error(good.substr(0, kOptional + 112 + 20)) ==
          "u.efi: the section table runs past the end of the file");
    CHECK(error(good.substr(0, good.size() - 1)) == "u.efi: section .linux lies outside the file");
    CHECK(error(pe({{".linux", "k", 0, 0xfffffff0}})) ==
          "u.efi: section .linux lies outside the file");
    // A 32-bit PE reads too.
    CHECK(pe_image(pe({{".linux", "k"}}, 0x10b), "u.efi"));

    std::string huge = pe({{".linux", "a", 0x7fffffff}});
    auto r = uki_sections(huge, pe_image(huge, "u.efi").value(), "u.efi");
    REQUIRE_FALSE(r);
    CHECK(r.error().what() ==
          "u.efi: section .linux claims 2147483647 bytes in memory, more than the file");
}

namespace {

// One EFI_SIGNATURE_LIST: type GUID, sizes, no header, `entries` each after a 16-byte owner.
std::string signature_list(std::string_view type, const std::vector<std::string>& entries,
                           size_t entry_size) {
    std::string out(type);
    const uint32_t list = uint32_t(28 + entries.size() * (16 + entry_size));
    for (uint32_t v : {list, uint32_t(0), uint32_t(16 + entry_size)})
        for (int i = 0; i < 4; ++i)
            out.push_back(char(v >> (8 * i)));
    for (const auto& e : entries)
        out += std::string(16, 'o') + e;
    return out;
}

const std::string kSha256Type("\x26\x16\xc4\xc1\x4c\x50\x92\x40\xac\xa9\x41\xf9\x36\x93\x43\x28",
                              16);
const std::string kX509Sha256Type(
    "\x92\xa4\xd2\x3b\xc0\x96\x79\x40\xb4\x20\xfc\xf9\x8e\xf1\x03\xed", 16);
const std::string kX509Type("\xa1\x59\xc0\xa5\xe4\x94\xa7\x4a\x87\xb5\xab\x15\x5c\x2b\xf0\x72", 16);

}  // namespace

TEST_CASE("EFI signature lists: hashes and certificates, lists back to back",
          "[boot][secureboot]") {
    const std::string db =
        signature_list(kSha256Type, {std::string(32, 'a'), std::string(32, 'b')}, 32) +
        signature_list(kX509Type, {"cert-der"}, 8) +
        signature_list(std::string(16, 'z'), {"rsa2048"}, 7) +
        signature_list(kX509Sha256Type, {std::string(48, 't')}, 48);
    auto parsed = parse_signature_lists(db, "db");
    REQUIRE(parsed);
    REQUIRE(parsed->sha256.size() == 2);
    CHECK(parsed->sha256[1][0] == 'b');
    CHECK(parsed->x509 == std::vector<std::string>{"cert-der"});
    CHECK(parsed->other == 1);
    REQUIRE(parsed->x509_tbs_sha256.size() == 1);  // the hash; the revocation time after it
    CHECK(parsed->x509_tbs_sha256[0][31] == 't');
    CHECK(parse_signature_lists("", "db"));  // an empty variable: no entries

    auto refused = [](const std::string& data, const std::string& message) {
        auto r = parse_signature_lists(data, "db");
        REQUIRE_FALSE(r);
        CHECK(r.error().message() == message);
    };
    refused(db.substr(0, 10), "db: signature list at byte 0: truncated header");
    refused(db.substr(0, db.size() - 1),
            "db: signature list at byte 227: list size 92 does not fit");
    std::string wrong = signature_list(kSha256Type, {std::string(31, 'a')}, 31);
    refused(wrong, "db: signature list at byte 0: SHA-256 entries of other size");
    refused(signature_list(kX509Sha256Type, {std::string(32, 't')}, 32),
            "db: signature list at byte 0: X509_SHA256 entries of other size");
    std::string ragged = signature_list(kX509Type, {"abc"}, 3);
    ragged[16] = char(ragged[16] + 1);  // the list one byte longer than its entries
    ragged.push_back('x');
    refused(ragged, "db: signature list at byte 0: 20 bytes of signatures of 19 bytes each");
}

TEST_CASE("Authenticode: indirect data and certificate tables that do not add up",
          "[boot][secureboot]") {
    // SEQUENCE { SEQUENCE {}, SEQUENCE { SEQUENCE { OID sha256 }, OCTET STRING[32] } }
    const std::string oid("\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01", 11);
    const std::string alg = "\x30" + std::string(1, char(oid.size())) + oid;
    const std::string digest = "\x04\x20" + std::string(32, 'd');
    const std::string info =
        "\x30" + std::string(1, char(alg.size() + digest.size())) + alg + digest;
    const std::string data("\x30\x00", 2);
    const std::string body = data + info;
    const std::string der = "\x30" + std::string(1, char(body.size())) + body;
    auto idc = parse_indirect_data(der, "u");
    REQUIRE(idc);
    CHECK(idc->is_sha256());
    CHECK(idc->digest == std::string(32, 'd'));
    CHECK(idc->content == body);
    for (size_t cut = 0; cut < der.size(); ++cut) {
        auto r = parse_indirect_data(der.substr(0, cut), "u");
        REQUIRE_FALSE(r);
        CHECK(r.error().message() == "u: the signature's indirect data is not the DER expected");
    }
    // A PE whose optional header has no certificate table entry cannot be hashed.
    const std::string img = pe({{".linux", "kernel"}});
    auto parsed = pe_image(img, "tiny");
    REQUIRE(parsed);
    CHECK(parsed->cert_entry_offset == 0);
    auto h = authenticode_sha256(img, *parsed, "tiny");
    REQUIRE_FALSE(h);
    CHECK(h.error().message() ==
          "tiny: the PE headers (SizeOfHeaders 0) do not cover the optional header and the "
          "section table");
    const auto table = authenticode_table(img, *parsed);
    CHECK(table.pkcs7.empty());
    CHECK(table.whole);
}

TEST_CASE("Authenticode: the digest algorithm where EDK2 reads it", "[boot][secureboot]") {
    // SEQUENCE (two-byte length) { OID signedData, [0] { SEQUENCE { INTEGER 1, SET { SEQUENCE {
    // OID ...: the first digest algorithm's OID content starts at byte 32.
    const std::string head = std::string("\x30\x82\x01\x00", 4) +
                             std::string("\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02", 11) +
                             std::string("\xa0\x82\x00\xf0\x30\x82\x00\xec\x02\x01\x01", 11) +
                             std::string("\x31\x0f\x30\x0d\x06\x09", 6);
    REQUIRE(head.size() == 32);
    const std::string sha256("\x60\x86\x48\x01\x65\x03\x04\x02\x01", 9);
    const std::string sha384("\x60\x86\x48\x01\x65\x03\x04\x02\x02", 9);
    CHECK(edk2_signature_layout(head + sha256) == SignatureLayout::sha256);
    CHECK(edk2_signature_layout(head + sha384) == SignatureLayout::other_digest);
    CHECK(edk2_signature_layout(head + sha256.substr(0, 8)) == SignatureLayout::unreadable);
    // A one-byte (short form) outer length: EDK2's fixed offset does not hold; it skips it.
    std::string short_form = head + sha256;
    short_form[1] = 0x70;
    CHECK(edk2_signature_layout(short_form) == SignatureLayout::unreadable);
}
