#include "ballast/boot/authenticode.hpp"

#include <algorithm>

#include "ballast/core/bytes.hpp"
#include "ballast/core/sha256.hpp"

namespace ballast::boot {
namespace {

constexpr uint16_t kWinCertPkcsSignedData = 0x0002;
constexpr uint16_t kWinCertEfiGuid = 0x0ef1;
// EFI_CERT_TYPE_PKCS7_GUID 4aafd29d-68df-49ee-8aa9-347d375665a7, as it lies in memory.
constexpr std::string_view kCertTypePkcs7Guid(
    "\x9d\xd2\xaf\x4a\xdf\x68\xee\x49\x8a\xa9\x34\x7d\x37\x56\x65\xa7", 16);
constexpr size_t kWinCertHeader = 8;  // dwLength, wRevision, wCertificateType

// One DER element: a single-byte tag and a definite length (what Authenticode's structures use).
struct Der {
    uint8_t tag = 0;
    std::string_view contents;
    size_t size = 0;  // header and contents
};

Result<Der> der_read(std::string_view in, uint8_t want, std::string_view what) {
    auto bad = [&] {
        return fail(Errc::parse, "{}: the signature's indirect data is not the DER expected", what);
    };
    if (in.size() < 2 || uint8_t(in[0]) != want) return bad();
    size_t len = uint8_t(in[1]), at = 2;
    if (len & 0x80) {
        const size_t n = len & 0x7f;
        if (n == 0 || n > 4 || in.size() < 2 + n) return bad();
        len = 0;
        for (size_t i = 0; i < n; ++i)
            len = len << 8 | uint8_t(in[2 + i]);
        at += n;
    }
    if (in.size() - at < len) return bad();
    return Der{want, in.substr(at, len), at + len};
}

}  // namespace

Result<Sha256Digest> authenticode_sha256(std::string_view image, const PeImage& pe,
                                         std::string_view what) {
    if (pe.checksum_offset == 0 || pe.size_of_headers > image.size() ||
        pe.size_of_headers < pe.section_table_end ||
        pe.size_of_headers < std::max(pe.checksum_offset + 4, pe.cert_entry_offset + 8))
        return fail(Errc::parse,
                    "{}: the PE headers (SizeOfHeaders {}) do not cover the optional header and "
                    "the section table",
                    what, pe.size_of_headers);
    // What EDK2's loader refuses before it would hash (PeCoffLoaderGetPeHeader).
    if (pe.rva_count > 16 || pe.optional_size != pe.optional_fixed + size_t(pe.rva_count) * 8)
        return fail(Errc::parse,
                    "{}: the optional header's size ({}) does not match its {} data directories",
                    what, pe.optional_size, pe.rva_count);
    if (pe.size_of_headers >= pe.size_of_image)
        return fail(Errc::parse, "{}: SizeOfHeaders {} is not below SizeOfImage {}", what,
                    pe.size_of_headers, pe.size_of_image);
    for (const auto& s : pe.sections)
        if (s.raw_size != 0 && s.virtual_address < pe.size_of_headers)
            return fail(Errc::parse, "{}: section {} is loaded inside the PE headers", what,
                        s.name);
    auto h = BALLAST_TRY(Sha256::make());
    h.update(image.substr(0, pe.checksum_offset));
    if (pe.cert_entry_offset != 0) {
        h.update(
            image.substr(pe.checksum_offset + 4, pe.cert_entry_offset - pe.checksum_offset - 4));
        h.update(
            image.substr(pe.cert_entry_offset + 8, pe.size_of_headers - pe.cert_entry_offset - 8));
    } else {
        h.update(image.substr(pe.checksum_offset + 4, pe.size_of_headers - pe.checksum_offset - 4));
    }
    std::vector<const PeSection*> sections;
    for (const auto& s : pe.sections)
        if (s.raw_size != 0) sections.push_back(&s);
    // Stable, as EDK2's insertion sort: sections at the same offset keep the table's order.
    std::ranges::stable_sort(sections, {}, &PeSection::raw_offset);
    uint64_t hashed = pe.size_of_headers;
    for (const auto* s : sections) {
        if (s->raw_offset < pe.size_of_headers)
            return fail(Errc::parse, "{}: section {} starts inside the PE headers", what, s->name);
        h.update(image.substr(s->raw_offset, s->raw_size));  // pe_image() checked the range
        hashed += s->raw_size;
    }
    // The rest of the file but the certificate table, from SUM_OF_BYTES_HASHED as the
    // specification and EDK2 count it.
    if (image.size() > hashed) {
        if (image.size() - hashed < pe.cert_size)
            return fail(Errc::parse, "{}: the certificate table overlaps the sections", what);
        h.update(image.substr(size_t(hashed), image.size() - size_t(hashed) - pe.cert_size));
    }
    return h.digest();
}

AuthenticodeTable authenticode_table(std::string_view image, const PeImage& pe) {
    AuthenticodeTable out;
    const std::string_view table = image.substr(pe.cert_offset, pe.cert_size);
    size_t at = 0;
    while (at < table.size()) {
        const size_t left = table.size() - at;
        if (left <= kWinCertHeader) break;
        const uint32_t len = le32(table, at);
        if (len > left) break;
        const uint16_t type = le16(table, at + 6);
        if (type == kWinCertPkcsSignedData) {
            if (len <= kWinCertHeader) break;
            out.pkcs7.push_back(table.substr(at + kWinCertHeader, len - kWinCertHeader));
        } else if (type == kWinCertEfiGuid) {
            if (len <= kWinCertHeader + 16) break;
            if (table.substr(at + kWinCertHeader, 16) == kCertTypePkcs7Guid)
                out.pkcs7.push_back(
                    table.substr(at + kWinCertHeader + 16, len - kWinCertHeader - 16));
        } else if (len < kWinCertHeader) {
            break;  // another type: skipped, but it must at least hold its header
        }
        at += (size_t(len) + 7) / 8 * 8;  // entries are 8-byte aligned
    }
    out.whole = at == table.size();
    return out;
}

namespace {
// 2.16.840.1.101.3.4.2.1, the OID's content octets.
constexpr std::string_view kSha256Oid("\x60\x86\x48\x01\x65\x03\x04\x02\x01", 9);
// Where EDK2 reads SignedData.digestAlgorithms' first OID: a fixed offset that holds when the
// outer lengths take two bytes (HashPeImageByType).
constexpr size_t kEdk2DigestOidAt = 32;
}  // namespace

bool IndirectData::is_sha256() const {
    return digest_oid == kSha256Oid && digest.size() == 32;
}

SignatureLayout edk2_signature_layout(std::string_view der) {
    if (der.size() < kEdk2DigestOidAt + kSha256Oid.size() || (uint8_t(der[1]) & 0x82) != 0x82)
        return SignatureLayout::unreadable;
    return der.substr(kEdk2DigestOidAt, kSha256Oid.size()) == kSha256Oid
               ? SignatureLayout::sha256
               : SignatureLayout::other_digest;
}

Result<IndirectData> parse_indirect_data(std::string_view der, std::string_view what) {
    const Der outer = BALLAST_TRY(der_read(der, 0x30, what));
    const Der data = BALLAST_TRY(der_read(outer.contents, 0x30, what));
    const Der info = BALLAST_TRY(der_read(outer.contents.substr(data.size), 0x30, what));
    const Der alg = BALLAST_TRY(der_read(info.contents, 0x30, what));
    const Der oid = BALLAST_TRY(der_read(alg.contents, 0x06, what));
    const Der digest = BALLAST_TRY(der_read(info.contents.substr(alg.size), 0x04, what));
    return IndirectData{outer.contents, oid.contents, digest.contents};
}

}  // namespace ballast::boot
