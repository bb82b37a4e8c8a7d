#include "ballast/boot/secure_boot.hpp"

#include <algorithm>
#include <array>
#include <filesystem>

#include "ballast/core/atomic_file.hpp"
#include "ballast/core/bytes.hpp"
#include "ballast/core/encoding.hpp"
#include "ballast/core/openssl.hpp"

namespace ballast::boot {
namespace {

// GUIDs as they lie in memory (the first three fields little-endian).
constexpr std::string_view kCertSha256(
    "\x26\x16\xc4\xc1\x4c\x50\x92\x40\xac\xa9\x41\xf9\x36\x93\x43\x28", 16);
constexpr std::string_view kCertX509(
    "\xa1\x59\xc0\xa5\xe4\x94\xa7\x4a\x87\xb5\xab\x15\x5c\x2b\xf0\x72", 16);
constexpr size_t kListHeader = 28;  // SignatureType, ListSize, HeaderSize, SignatureSize
constexpr size_t kOwner = 16;       // each signature's SignatureOwner GUID
constexpr std::string_view kGlobalGuid = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
constexpr std::string_view kImageSecurityGuid = "d719b2cb-3d3a-4596-a3bc-dad00e67656f";
constexpr size_t kMaxVariable = 1u << 20;
constexpr const char* kSpcIndirectData = "1.3.6.1.4.1.311.2.1.4";

// A variable's data, without efivarfs' 4 bytes of attributes; nullopt when it is not there.
Result<std::optional<std::string>> read_variable(const std::string& efivars, std::string_view name,
                                                 std::string_view guid) {
    const auto path = std::filesystem::path(efivars) / fmt::format("{}-{}", name, guid);
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) return std::nullopt;
    std::string data = BALLAST_TRY(read_file(path, kMaxVariable));
    if (data.size() < 4) return fail(Errc::parse, "{}: shorter than its attributes", path.string());
    return data.substr(4);
}

using X509Own = ossl::Own<X509>;

Result<X509Own> der_certificate(const ossl::Api& a, std::string_view der) {
    const auto* p = reinterpret_cast<const unsigned char*>(der.data());
    X509* x = a.d2i_X509(nullptr, &p, long(der.size()));
    if (!x) return fail(Errc::parse, "not a DER certificate ({})", ossl::errors(a));
    return X509Own(x, [&a](X509* c) { a.X509_free(c); });
}

Result<std::string> der_of(const ossl::Api& a, X509* x) {
    unsigned char* out = nullptr;
    const int n = a.i2d_X509(x, &out);
    if (n < 0) return fail(Errc::failed, "i2d_X509: {}", ossl::errors(a));
    std::string der(reinterpret_cast<const char*>(out), size_t(n));
    a.CRYPTO_free(out, OPENSSL_FILE, OPENSSL_LINE);
    return der;
}

std::string subject(const ossl::Api& a, X509* x) {
    char buf[512];
    a.X509_NAME_oneline(a.X509_get_subject_name(x), buf, sizeof buf);
    return buf;
}

bool listed(const std::vector<std::string>& certs, const std::string& der) {
    return std::ranges::find(certs, der) != certs.end();
}

// One signature's verdict: "" when it counts, else why not. Its signer goes to `signers`.
Result<std::string> judge_signature(const ossl::Api& a, std::string_view der,
                                    const Sha256Digest& digest, const SignatureDb& db,
                                    const SignatureDb& dbx, std::vector<std::string>& signers,
                                    std::string_view what) {
    const auto* p = reinterpret_cast<const unsigned char*>(der.data());
    ossl::Own<PKCS7> p7(a.d2i_PKCS7(nullptr, &p, long(der.size())),
                        [&a](PKCS7* x) { a.PKCS7_free(x); });
    if (!p7 || a.OBJ_obj2nid(p7->type) != NID_pkcs7_signed || !p7->d.sign || !p7->d.sign->contents)
        return fail(Errc::parse, "{}: a signature is not PKCS#7 SignedData ({})", what,
                    ossl::errors(a));
    PKCS7* content = p7->d.sign->contents;
    char oid[80] = {};
    a.OBJ_obj2txt(oid, sizeof oid, content->type, 1);
    if (std::string_view(oid) != kSpcIndirectData || !content->d.other ||
        content->d.other->type != V_ASN1_SEQUENCE || !content->d.other->value.sequence)
        return fail(Errc::parse, "{}: a signature does not sign Authenticode indirect data", what);
    const ASN1_STRING* seq = content->d.other->value.sequence;
    const std::string_view indirect(reinterpret_cast<const char*>(seq->data), size_t(seq->length));
    const IndirectData idc = BALLAST_TRY(parse_indirect_data(indirect, what));

    std::string signer = "an unnamed signer";
    ossl::Own<OPENSSL_STACK> found(
        reinterpret_cast<OPENSSL_STACK*>(a.PKCS7_get0_signers(p7.get(), nullptr, 0)),
        [&a](OPENSSL_STACK* s) { a.OPENSSL_sk_free(s); });
    if (found && a.OPENSSL_sk_num(found.get()) > 0)
        signer = subject(a, static_cast<X509*>(a.OPENSSL_sk_value(found.get(), 0)));
    a.ERR_clear_error();
    signers.push_back(signer);

    if (!idc.is_sha256()) return fmt::format("{} signs with a digest other than SHA-256", signer);
    if (!std::ranges::equal(idc.digest, digest, [](char c, uint8_t d) { return uint8_t(c) == d; }))
        return fmt::format("{} signed other bytes (its digest is not this image's)", signer);
    // A certificate the signature carries (its signer among them) that dbx revokes.
    if (const auto* carried = p7->d.sign->cert) {
        const auto* stack = reinterpret_cast<const OPENSSL_STACK*>(carried);
        for (int i = 0; i < a.OPENSSL_sk_num(stack); ++i) {
            auto* x = static_cast<X509*>(a.OPENSSL_sk_value(stack, i));
            if (listed(dbx.x509, BALLAST_TRY(der_of(a, x))))
                return fmt::format("{} carries {}, which dbx revokes", signer, subject(a, x));
        }
    }
    // db's certificates are the trust anchors, each on its own (a db entry need not be a root),
    // dates not checked (firmware has no trusted clock), any key usage.
    ossl::Own<X509_STORE> store(a.X509_STORE_new(), [&a](X509_STORE* s) { a.X509_STORE_free(s); });
    if (!store) return fail(Errc::failed, "X509_STORE_new: {}", ossl::errors(a));
    a.X509_STORE_set_flags(store.get(), X509_V_FLAG_PARTIAL_CHAIN | X509_V_FLAG_NO_CHECK_TIME);
    a.X509_STORE_set_purpose(store.get(), X509_PURPOSE_ANY);
    size_t anchors = 0;
    for (const auto& cert : db.x509) {
        if (listed(dbx.x509, cert)) continue;
        auto x = der_certificate(a, cert);
        if (!x) continue;  // counted as damage by nobody: firmware skips it too
        if (a.X509_STORE_add_cert(store.get(), x->get()) == 1) ++anchors;
    }
    if (anchors == 0) return fmt::format("{}: db holds no certificate to check it against", signer);
    auto in = BALLAST_TRY(ossl::mem_bio(a, idc.content));
    if (a.PKCS7_verify(p7.get(), nullptr, store.get(), in.get(), nullptr, PKCS7_BINARY) != 1)
        return fmt::format("{} does not chain to a certificate in db ({})", signer,
                           ossl::errors(a));
    return std::string();
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
        for (size_t e = at + kListHeader + header; e < at + list; e += size) {
            const std::string_view sig = data.substr(e + kOwner, size - kOwner);
            if (type == kCertSha256) {
                Sha256Digest d{};
                std::copy(sig.begin(), sig.end(), d.begin());
                out.sha256.push_back(d);
            } else if (type == kCertX509) {
                out.x509.emplace_back(sig);
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
        auto v = BALLAST_TRY(read_variable(efivars, name, kGlobalGuid));
        return v && !v->empty() && (*v)[0] == 1;
    };
    s.enabled = BALLAST_TRY(flag("SecureBoot"));
    s.setup_mode = BALLAST_TRY(flag("SetupMode"));
    for (auto [name, db] : {std::pair{"db", &s.db}, {"dbx", &s.dbx}})
        if (auto v = BALLAST_TRY(read_variable(efivars, name, kImageSecurityGuid)))
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
    const auto sigs = BALLAST_TRY(authenticode_signatures(image, pe, what));
    if (std::ranges::find(dbx.sha256, digest) != dbx.sha256.end()) {
        v.reason = fmt::format("its Authenticode digest {} is in dbx", v.digest);
        return v;
    }
    std::vector<std::string> why;
    for (const auto sig : sigs) {
        const std::string no =
            BALLAST_TRY(judge_signature(a, sig, digest, db, dbx, v.signers, what));
        if (no.empty()) {
            v.allowed = true;
            v.reason = fmt::format("signed by {}, which chains to db", v.signers.back());
            return v;
        }
        why.push_back(no);
    }
    if (std::ranges::find(db.sha256, digest) != db.sha256.end()) {
        v.allowed = true;
        v.reason = fmt::format("its Authenticode digest {} is in db", v.digest);
        return v;
    }
    v.reason = sigs.empty() ? std::string("it is not signed, and its digest is not in db")
                            : fmt::format("{}", fmt::join(why, "; "));
    return v;
}

}  // namespace ballast::boot
