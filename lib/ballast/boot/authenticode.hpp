// Authenticode, as UEFI firmware checks a PE image under Secure Boot (Microsoft's "Windows
// Authenticode Portable Executable Signature Format"; EDK2's DxeImageVerificationLib): the
// image's digest and the signatures in its certificate table. Pure: bytes in.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "ballast/boot/uki.hpp"
#include "ballast/core/result.hpp"

namespace ballast::boot {

using Sha256Digest = std::array<uint8_t, 32>;

// SHA-256 over the image as Authenticode defines it (and EDK2's HashPeImage computes it): the
// headers without the CheckSum and the certificate table's directory entry, each section's raw
// data in file order, then whatever follows them up to the certificate table. What a signature
// signs and what dbx lists. Refused, as EDK2's loader refuses them: an optional header whose
// size does not match its data directories (at most 16), headers that do not cover the section
// table or reach SizeOfImage, a section starting or loaded inside the headers, a certificate
// table overlapping the sections.
[[nodiscard]] Result<Sha256Digest> authenticode_sha256(std::string_view image, const PeImage& pe,
                                                       std::string_view what);

// The certificate table walked as EDK2 walks it: each WIN_CERTIFICATE of type PKCS_SIGNED_DATA
// (any revision), or EFI_GUID with the PKCS#7 GUID, gives its PKCS#7 SignedData (DER; views into
// `image`); other types are skipped. The walk stops at an entry that does not fit; `whole` says
// whether it ended exactly at the table's end (firmware refuses the image otherwise).
struct AuthenticodeTable {
    std::vector<std::string_view> pkcs7;
    bool whole = true;
};
[[nodiscard]] AuthenticodeTable authenticode_table(std::string_view image, const PeImage& pe);

// SpcIndirectDataContent ::= SEQUENCE { data SpcAttributeTypeAndOptionalValue,
//                                       messageDigest DigestInfo }
// given as its DER (a signature's content). Views into `der`.
struct IndirectData {
    std::string_view content;     // the SEQUENCE's contents: the bytes the signature signs
    std::string_view digest_oid;  // the DigestInfo's algorithm, the OID's content octets
    std::string_view digest;      // the image digest it carries
    [[nodiscard]] bool is_sha256() const;
};
[[nodiscard]] Result<IndirectData> parse_indirect_data(std::string_view der, std::string_view what);

// How EDK2 reads a signature's digest algorithm (HashPeImageByType): only DER whose outer length
// takes the long form (byte 1 & 0x82), the algorithm's OID at the fixed offset 32. Firmware
// skips a signature it cannot read so; Ballast judges SHA-256 ones.
enum class SignatureLayout { unreadable, sha256, other_digest };
[[nodiscard]] SignatureLayout edk2_signature_layout(std::string_view der);

}  // namespace ballast::boot
