#include "ballast/boot/secure_boot.hpp"

#include <algorithm>
#include <array>
#include <filesystem>

#include "ballast/core/atomic_file.hpp"
#include "ballast/core/bytes.hpp"
#include "ballast/core/encoding.hpp"
#include "ballast/core/openssl.hpp"
#include "ballast/core/sha256.hpp"

namespace ballast::boot {
namespace {

// GUIDs as they lie in memory (the first three fields little-endian).
constexpr std::string_view kCertSha256(
    "\x26\x16\xc4\xc1\x4c\x50\x92\x40\xac\xa9\x41\xf9\x36\x93\x43\x28", 16);
constexpr std::string_view kCertX509(
    "\xa1\x59\xc0\xa5\xe4\x94\xa7\x4a\x87\xb5\xab\x15\x5c\x2b\xf0\x72", 16);
// EFI_CERT_X509_SHA256_GUID: a TBSCertificate's SHA-256, then an EFI_TIME of revocation.
constexpr std::string_view kCertX509Sha256(
    "\x92\xa4\xd2\x3b\xc0\x96\x79\x40\xb4\x20\xfc\xf9\x8e\xf1\x03\xed", 16);
constexpr size_t kEfiTime = 16;
constexpr size_t kListHeader = 28;  // SignatureType, ListSize, HeaderSize, SignatureSize
constexpr size_t kOwner = 16;       // each signature's SignatureOwner GUID
constexpr std::string_view kGlobalGuid = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
constexpr std::string_view kImageSecurityGuid = "d719b2cb-3d3a-4596-a3bc-dad00e67656f";
constexpr const char* kSpcIndirectData = "1.3.6.1.4.1.311.2.1.4";

using X509Own = ossl::Own<X509>;

Result<X509Own> der_certificate(const ossl::Api& a, std::string_view der) {
    const auto* p = reinterpret_cast<const unsigned char*>(der.data());
    X509* x = a.d2i_X509(nullptr, &p, long(der.size()));
    if (!x) return fail(Errc::parse, "not a DER certificate ({})", ossl::errors(a));
    return X509Own(x, [&a](X509* c) { a.X509_free(c); });
}

std::string subject(const ossl::Api& a, X509* x) {
    char buf[512];
    a.X509_NAME_oneline(a.X509_get_subject_name(x), buf, sizeof buf);
    return buf;
}

// A store whose anchors are `certs` (DER), each on its own (a db entry need not be a root),
// dates not checked, any key usage: how firmware trusts db and dbx certificates.
Result<ossl::Own<X509_STORE>> anchors(const ossl::Api& a, const std::vector<std::string>& certs) {
    ossl::Own<X509_STORE> store(a.X509_STORE_new(), [&a](X509_STORE* s) { a.X509_STORE_free(s); });
    if (!store) return fail(Errc::failed, "X509_STORE_new: {}", ossl::errors(a));
    a.X509_STORE_set_flags(store.get(), X509_V_FLAG_PARTIAL_CHAIN | X509_V_FLAG_NO_CHECK_TIME);
    a.X509_STORE_set_purpose(store.get(), X509_PURPOSE_ANY);
    for (const auto& cert : certs)
        if (auto x = der_certificate(a, cert)) (void)a.X509_STORE_add_cert(store.get(), x->get());
    a.ERR_clear_error();  // firmware skips a certificate it cannot read; so does this
    return store;
}

// One signature, read and checked against db and dbx.
struct Judged {
    bool readable = false;
    SignerVerdict::Signer signer;
    std::string forbidden_by;   // the dbx certificate it chains to
    bool allowed = false;       // chains to a db certificate
    std::string why;            // when it counts for nothing
    bool other_digest = false;  // not SHA-256: not judged
};

// A certificate's TBSCertificate hash, as dbx's X509_SHA256 entries list them.
Result<Sha256Digest> tbs_sha256(const ossl::Api& a, X509* x) {
    unsigned char* out = nullptr;
    const int n = a.i2d_re_X509_tbs(x, &out);
    if (n < 0) return fail(Errc::failed, "i2d_re_X509_tbs: {}", ossl::errors(a));
    auto d = sha256_digest(std::string_view(reinterpret_cast<const char*>(out), size_t(n)));
    a.CRYPTO_free(out, OPENSSL_FILE, OPENSSL_LINE);
    return d;
}

// db's certificates that can anchor a signature: those dbx does not revoke by TBS hash.
Result<std::vector<std::string>> db_anchors(const ossl::Api& a, const SignatureDb& db,
                                            const SignatureDb& dbx) {
    std::vector<std::string> trusted;
    for (const auto& cert : db.x509) {
        auto x = der_certificate(a, cert);
        if (!x) continue;
        if (std::ranges::find(dbx.x509_tbs_sha256, BALLAST_TRY(tbs_sha256(a, x->get()))) ==
            dbx.x509_tbs_sha256.end())
            trusted.push_back(cert);
    }
    a.ERR_clear_error();
    return trusted;
}

// `trusted`: db_anchors().
Result<Judged> judge_signature(const ossl::Api& a, std::string_view der, const Sha256Digest& digest,
                               const std::vector<std::string>& trusted, const SignatureDb& dbx) {
    Judged j;
    const SignatureLayout layout = edk2_signature_layout(der);
    if (layout == SignatureLayout::unreadable) {
        j.why = "a signature not laid out as firmware reads it (two-byte DER lengths) is skipped";
        return j;
    }
    const auto* p = reinterpret_cast<const unsigned char*>(der.data());
    ossl::Own<PKCS7> p7(a.d2i_PKCS7(nullptr, &p, long(der.size())),
                        [&a](PKCS7* x) { a.PKCS7_free(x); });
    PKCS7* content = p7 && a.OBJ_obj2nid(p7->type) == NID_pkcs7_signed && p7->d.sign
                         ? p7->d.sign->contents
                         : nullptr;
    char oid[80] = {};
    if (content) a.OBJ_obj2txt(oid, sizeof oid, content->type, 1);
    a.ERR_clear_error();
    if (!content || std::string_view(oid) != kSpcIndirectData || !content->d.other ||
        content->d.other->type != V_ASN1_SEQUENCE || !content->d.other->value.sequence) {
        j.why = "a certificate table entry is not an Authenticode PKCS#7 signature";
        return j;
    }
    const ASN1_STRING* seq = content->d.other->value.sequence;
    const auto idc = parse_indirect_data(
        std::string_view(reinterpret_cast<const char*>(seq->data), size_t(seq->length)), "");
    if (!idc) {
        j.why = "a signature's indirect data cannot be read";
        return j;
    }
    j.readable = true;
    j.signer.subject = "an unnamed signer";
    ossl::Own<OPENSSL_STACK> found(
        reinterpret_cast<OPENSSL_STACK*>(a.PKCS7_get0_signers(p7.get(), nullptr, 0)),
        [&a](OPENSSL_STACK* s) { a.OPENSSL_sk_free(s); });
    if (found && a.OPENSSL_sk_num(found.get()) > 0)
        j.signer.subject = subject(a, static_cast<X509*>(a.OPENSSL_sk_value(found.get(), 0)));
    a.ERR_clear_error();
    if (layout != SignatureLayout::sha256 || !idc->is_sha256()) {
        j.other_digest = true;
        j.why = fmt::format(
            "{} signs with a digest other than SHA-256, which Ballast does not "
            "judge",
            j.signer.subject);
        return j;
    }
    j.signer.signs_image =
        std::ranges::equal(idc->digest, digest, [](char c, uint8_t d) { return uint8_t(c) == d; });
    if (!j.signer.signs_image) {
        j.why =
            fmt::format("{} signed other bytes (its digest is not this image's)", j.signer.subject);
        return j;
    }
    auto verifies = [&](const std::vector<std::string>& certs) -> Result<bool> {
        auto store = BALLAST_TRY(anchors(a, certs));
        auto in = BALLAST_TRY(ossl::mem_bio(a, idc->content));
        const bool ok =
            a.PKCS7_verify(p7.get(), nullptr, store.get(), in.get(), nullptr, PKCS7_BINARY) == 1;
        a.ERR_clear_error();
        return ok;
    };
    // A certificate the signature carries whose TBS hash dbx lists.
    if (const auto* carried = p7->d.sign->cert) {
        const auto* stack = reinterpret_cast<const OPENSSL_STACK*>(carried);
        for (int i = 0; i < a.OPENSSL_sk_num(stack); ++i) {
            auto* x = static_cast<X509*>(a.OPENSSL_sk_value(stack, i));
            if (std::ranges::find(dbx.x509_tbs_sha256, BALLAST_TRY(tbs_sha256(a, x))) !=
                dbx.x509_tbs_sha256.end()) {
                j.forbidden_by = subject(a, x) + " (by its TBS hash)";
                return j;
            }
        }
    }
    // dbx certificates one at a time, as EDK2's IsForbiddenByDbx: which one revokes it.
    for (const auto& cert : dbx.x509)
        if (BALLAST_TRY(verifies({cert}))) {
            auto x = der_certificate(a, cert);
            j.forbidden_by = x ? subject(a, x->get()) : std::string("a dbx certificate");
            return j;
        }
    j.allowed = !trusted.empty() && BALLAST_TRY(verifies(trusted));
    if (!j.allowed)
        j.why = fmt::format("{} does not chain to a certificate in db", j.signer.subject);
    return j;
}

}  // namespace

Result<SignatureDb> parse_signature_lists(std::string_view data, std::string_view what) {
    SignatureDb out;
    for (size_t at = 0; at < data.size();) {
        auto bad = [&](std::string_view why) {
            return fail(Errc::parse, "{}: signature list at byte {}: {}", what, at, why);
        };
        if (data.size() - at < kListHeader) return bad("truncated header");
        const std::string_view type = data.substr(at, 16);
        const uint32_t list = le32(data, at + 16), header = le32(data, at + 20),
                       size = le32(data, at + 24);
        if (list > data.size() - at || list < kListHeader || header > list - kListHeader)
            return bad(fmt::format("list size {} does not fit", list));
        const size_t body = list - kListHeader - header;
        if (size <= kOwner || body % size != 0)
            return bad(fmt::format("{} bytes of signatures of {} bytes each", body, size));
        if (type == kCertSha256 && size != kOwner + 32) return bad("SHA-256 entries of other size");
        if (type == kCertX509Sha256 && size != kOwner + 32 + kEfiTime)
            return bad("X509_SHA256 entries of other size");
        for (size_t e = at + kListHeader + header; e < at + list; e += size) {
            const std::string_view sig = data.substr(e + kOwner, size - kOwner);
            if (type == kCertSha256) {
                Sha256Digest d{};
                std::copy(sig.begin(), sig.end(), d.begin());
                out.sha256.push_back(d);
            } else if (type == kCertX509) {
                out.x509.emplace_back(sig);
            } else if (type == kCertX509Sha256) {
                Sha256Digest d{};
                std::copy(sig.begin(), sig.begin() + 32, d.begin());
                out.x509_tbs_sha256.push_back(d);
            } else {
                ++out.other;
            }
        }
        at += list;
    }
    return out;
}

Result<SecureBootState> read_secure_boot(const std::string& efivars) {
    std::error_code ec;
    if (!std::filesystem::is_directory(efivars, ec))
        return fail(Errc::unsupported, "{}: no EFI variables (not booted with UEFI?)", efivars);
    SecureBootState s;
    auto flag = [&](std::string_view name) -> Result<bool> {
        auto v = BALLAST_TRY(read_efi_variable(efivars, name, kGlobalGuid));
        return v && !v->empty() && (*v)[0] == 1;
    };
    s.enabled = BALLAST_TRY(flag("SecureBoot"));
    s.setup_mode = BALLAST_TRY(flag("SetupMode"));
    for (auto [name, db] : {std::pair{"db", &s.db}, {"dbx", &s.dbx}})
        if (auto v = BALLAST_TRY(read_efi_variable(efivars, name, kImageSecurityGuid)))
            *db = BALLAST_TRY(parse_signature_lists(*v, fmt::format("EFI variable {}", name)));
    return s;
}

Result<SignerVerdict> check_image_signer(std::string_view image, const SignatureDb& db,
                                         const SignatureDb& dbx, std::string_view what) {
    const auto& a = *BALLAST_TRY(ossl::api());
    const PeImage pe = BALLAST_TRY(pe_image(image, what));
    const Sha256Digest digest = BALLAST_TRY(authenticode_sha256(image, pe, what));
    SignerVerdict v;
    v.digest = to_hex(digest);
    v.unjudged_dbx = dbx.other;
    const bool digest_in_db = std::ranges::find(db.sha256, digest) != db.sha256.end();
    if (std::ranges::find(dbx.sha256, digest) != dbx.sha256.end()) {
        v.reason = fmt::format("its Authenticode digest {} is in dbx", v.digest);
        return v;
    }
    if (pe.cert_size == 0) {
        v.allowed = digest_in_db;
        v.reason = digest_in_db ? fmt::format("its Authenticode digest {} is in db", v.digest)
                                : std::string("it is not signed, and its digest is not in db");
        return v;
    }
    const AuthenticodeTable table = authenticode_table(image, pe);
    std::vector<std::string> why;
    std::string allowed_by;
    const auto trusted = BALLAST_TRY(db_anchors(a, db, dbx));
    for (const auto sig : table.pkcs7) {
        const Judged j = BALLAST_TRY(judge_signature(a, sig, digest, trusted, dbx));
        if (j.readable) v.signers.push_back(j.signer);
        if (j.other_digest && (!dbx.x509.empty() || !dbx.x509_tbs_sha256.empty())) {
            v.reason = fmt::format(
                "the signature by {} uses a digest other than SHA-256: whether dbx revokes it "
                "cannot be told here, so the image is refused (firmware may allow it)",
                j.signer.subject);
            return v;
        }
        if (!j.forbidden_by.empty()) {
            v.allowed = false;
            v.reason = fmt::format("the signature by {} chains to {}, which dbx revokes",
                                   j.signer.subject, j.forbidden_by);
            return v;
        }
        if (j.allowed && allowed_by.empty())
            allowed_by = fmt::format("signed by {}, which chains to db", j.signer.subject);
        else if (j.readable && j.signer.signs_image && digest_in_db && allowed_by.empty())
            allowed_by = fmt::format("its Authenticode digest {} is in db", v.digest);
        if (!j.why.empty()) why.push_back(j.why);
    }
    if (!table.whole) {
        v.reason = "the certificate table does not end where its directory entry says";
        return v;
    }
    v.allowed = !allowed_by.empty();
    v.reason = v.allowed     ? allowed_by
               : why.empty() ? std::string("its certificate table holds no signature")
                             : fmt::format("{}", fmt::join(why, "; "));
    return v;
}

}  // namespace ballast::boot
