// UEFI Secure Boot's signature databases and the verdict the firmware will give an image
// (UEFI 2.10 section 32.5; EDK2's DxeImageVerificationLib): so that a release signed with the
// wrong key is refused before it is written to the ESP, rather than by the firmware at the next
// boot, which then costs a boot-counting try per attempt (../shared/specs/verified-boot.md).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "ballast/boot/authenticode.hpp"
#include "ballast/boot/efivars.hpp"
#include "ballast/core/result.hpp"

namespace ballast::boot {

struct SignatureDb {
    std::vector<Sha256Digest> sha256;  // EFI_CERT_SHA256_GUID: Authenticode digests of images
    std::vector<std::string> x509;     // EFI_CERT_X509_GUID: DER certificates
    // EFI_CERT_X509_SHA256_GUID: SHA-256 of a certificate's TBSCertificate (the revocation time
    // beside it is not used: a listed certificate revokes every signature, timestamped or not).
    std::vector<Sha256Digest> x509_tbs_sha256;
    size_t other = 0;  // entries of types Ballast does not judge by (SHA-1/384/512 hashes, ...)
};

// EFI_SIGNATURE_LISTs back to back: a db or dbx variable's data, or what efitools'
// cert-to-efi-sig-list and hash-to-efi-sig-list write. Anything that does not add up is
// Errc::parse naming `what` and the offset.
[[nodiscard]] Result<SignatureDb> parse_signature_lists(std::string_view data,
                                                        std::string_view what);

struct SecureBootState {
    bool enabled = false;     // SecureBoot = 1: the firmware enforces db/dbx
    bool setup_mode = false;  // SetupMode = 1: no PK, nothing enforced
    SignatureDb db, dbx;
};
// From efivarfs under `efivars` (each variable's data after its 4 bytes of attributes). A
// missing variable is an empty database; Errc::unsupported when `efivars` is not there (a
// machine booted without UEFI).
[[nodiscard]] Result<SecureBootState> read_secure_boot(const std::string& efivars = kEfivars);

struct SignerVerdict {
    bool allowed = false;
    std::string digest;  // the image's Authenticode SHA-256, hex
    struct Signer {
        std::string subject;       // "/CN=..."
        bool signs_image = false;  // its signature is over this image's digest
    };
    std::vector<Signer> signers;  // each readable signature's, in table order
    std::string reason;           // why, in words
    size_t unjudged_dbx = 0;      // dbx entries of types Ballast does not judge by
};
// EDK2's rules (DxeImageVerificationHandler): an image whose digest is in dbx is refused; an
// unsigned one is allowed only when db lists its digest. Otherwise every signature in the
// certificate table is looked at: one over this image's digest that chains to a dbx
// certificate refuses the image, whatever the others say; one that chains to a db certificate
// (any db certificate is an anchor; dates are not checked, as firmware has no clock it trusts),
// or the digest listed in db, allows it. A signature that cannot be read is skipped, and a
// table that does not end where its directory entry says refuses the image. SHA-256 signatures
// only: a signature with another digest counts for nothing, and refuses the image when dbx
// lists certificates (whether they revoke it cannot be told). dbx entries of other types are
// counted in `unjudged_dbx`. Errc::parse for a PE image that cannot be hashed.
[[nodiscard]] Result<SignerVerdict> check_image_signer(std::string_view image,
                                                       const SignatureDb& db,
                                                       const SignatureDb& dbx,
                                                       std::string_view what);

}  // namespace ballast::boot
