#include "ballast/update/signature.hpp"

#include <functional>
#include <memory>
#include <vector>

#include "ballast/core/atomic_file.hpp"
#include "ballast/core/openssl.hpp"

namespace ballast::update {
namespace {

using ossl::mem_bio;
using ossl::Own;

// Every certificate in a PEM file.
Result<std::vector<Own<X509>>> read_certs(const ossl::Api& a, const std::string& path) {
    auto text = BALLAST_TRY(read_file(path, 4u << 20));
    auto bio = BALLAST_TRY(mem_bio(a, text));
    std::vector<Own<X509>> out;
    while (X509* x = a.PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr))
        out.emplace_back(x, [&a](X509* c) { a.X509_free(c); });
    a.ERR_clear_error();  // the end of the file reads as an error
    if (out.empty()) return fail(Errc::parse, "{}: no PEM certificate in it", path);
    return out;
}

std::string subject_of(const ossl::Api& a, const X509* x) {
    char buf[512];
    a.X509_NAME_oneline(a.X509_get_subject_name(x), buf, sizeof buf);
    return buf;
}

std::string not_after_of(const ossl::Api& a, const X509* x) {
    BIO* b = a.BIO_new(a.BIO_s_mem());
    a.ASN1_TIME_print(b, a.X509_get0_notAfter(x));
    char* p = nullptr;
    long n = a.BIO_ctrl(b, BIO_CTRL_INFO, 0, &p);
    std::string s(p ? p : "", n > 0 ? size_t(n) : 0);
    a.BIO_free(b);
    return s;
}

}  // namespace

Result<std::string> sign(std::string_view data, const std::string& cert_pem,
                         const std::string& key_pem, const std::string& chain_pem) {
    const ossl::Api& a = *BALLAST_TRY(ossl::api());
    auto certs = BALLAST_TRY(read_certs(a, cert_pem));
    auto key_text = BALLAST_TRY(read_file(key_pem, 1u << 20));
    auto key_bio = BALLAST_TRY(mem_bio(a, key_text));
    Own<EVP_PKEY> key(a.PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr),
                      [&a](EVP_PKEY* k) { a.EVP_PKEY_free(k); });
    if (!key)
        return fail(Errc::parse, "{}: no PEM private key in it ({})", key_pem, ossl::errors(a));
    std::vector<Own<X509>> chain;
    Own<OPENSSL_STACK> stack(a.OPENSSL_sk_new_null(),
                             [&a](OPENSSL_STACK* s) { a.OPENSSL_sk_free(s); });
    if (!chain_pem.empty()) {
        chain = BALLAST_TRY(read_certs(a, chain_pem));
        for (auto& c : chain)
            a.OPENSSL_sk_push(stack.get(), c.get());
    }
    auto data_bio = BALLAST_TRY(mem_bio(a, data));
    Own<CMS_ContentInfo> cms(
        a.CMS_sign(certs[0].get(), key.get(), reinterpret_cast<STACK_OF(X509)*>(stack.get()),
                   data_bio.get(), CMS_BINARY | CMS_DETACHED),
        [&a](CMS_ContentInfo* c) { a.CMS_ContentInfo_free(c); });
    if (!cms)
        return fail(Errc::failed, "signing failed (does the key match {}?): {}", cert_pem,
                    ossl::errors(a));
    Own<BIO> out(a.BIO_new(a.BIO_s_mem()), [&a](BIO* b) { a.BIO_free(b); });
    if (!a.i2d_CMS_bio(out.get(), cms.get()))
        return fail(Errc::failed, "encoding the signature: {}", ossl::errors(a));
    char* p = nullptr;
    long n = a.BIO_ctrl(out.get(), BIO_CTRL_INFO, 0, &p);
    return std::string(p, size_t(n));
}

Result<Signer> verify(std::string_view data, std::string_view signature,
                      const std::string& keyring_pem) {
    const ossl::Api& a = *BALLAST_TRY(ossl::api());
    a.ERR_clear_error();
    auto sig_bio = BALLAST_TRY(mem_bio(a, signature));
    Own<CMS_ContentInfo> cms(a.d2i_CMS_bio(sig_bio.get(), nullptr),
                             [&a](CMS_ContentInfo* c) { a.CMS_ContentInfo_free(c); });
    if (!cms) {
        a.ERR_clear_error();
        return fail(Errc::parse, "manifest.json.sig is not a CMS signature");
    }
    // 1. The signature over these exact bytes (no trust decision yet).
    auto data_bio = BALLAST_TRY(mem_bio(a, data));
    if (a.CMS_verify(cms.get(), nullptr, nullptr, data_bio.get(), nullptr,
                     CMS_BINARY | CMS_DETACHED | CMS_NO_SIGNER_CERT_VERIFY) != 1) {
        std::string why = ossl::errors(a);
        return fail(Errc::verification,
                    "manifest.json does not match its signature (tampered or corrupt): {}", why);
    }
    Own<OPENSSL_STACK> signers(reinterpret_cast<OPENSSL_STACK*>(a.CMS_get0_signers(cms.get())),
                               [&a](OPENSSL_STACK* s) { a.OPENSSL_sk_free(s); });
    if (!signers || a.OPENSSL_sk_num(signers.get()) != 1)
        return fail(Errc::verification, "the signature must have exactly one signer");
    X509* signer = static_cast<X509*>(a.OPENSSL_sk_value(signers.get(), 0));
    Signer info{subject_of(a, signer), not_after_of(a, signer)};

    // 2. The signer's chain to the keyring, with dates.
    auto keyring = BALLAST_TRY_CTX(read_certs(a, keyring_pem), "keyring");
    Own<X509_STORE> store(a.X509_STORE_new(), [&a](X509_STORE* s) { a.X509_STORE_free(s); });
    for (auto& c : keyring)
        a.X509_STORE_add_cert(store.get(), c.get());
    Own<OPENSSL_STACK> untrusted(reinterpret_cast<OPENSSL_STACK*>(a.CMS_get1_certs(cms.get())),
                                 [&a](OPENSSL_STACK* s) {
                                     // get1: the stack holds references of its own.
                                     if (!s) return;
                                     for (int i = 0; i < a.OPENSSL_sk_num(s); ++i)
                                         a.X509_free(static_cast<X509*>(a.OPENSSL_sk_value(s, i)));
                                     a.OPENSSL_sk_free(s);
                                 });
    Own<X509_STORE_CTX> ctx(a.X509_STORE_CTX_new(),
                            [&a](X509_STORE_CTX* c) { a.X509_STORE_CTX_free(c); });
    a.X509_STORE_CTX_init(ctx.get(), store.get(), signer,
                          reinterpret_cast<STACK_OF(X509)*>(untrusted.get()));
    if (a.X509_verify_cert(ctx.get()) != 1) {
        int err = a.X509_STORE_CTX_get_error(ctx.get());
        X509* bad = a.X509_STORE_CTX_get_current_cert(ctx.get());
        std::string who = bad ? subject_of(a, bad) : info.subject;
        a.ERR_clear_error();
        switch (err) {
            case X509_V_ERR_CERT_HAS_EXPIRED:
                return fail(Errc::verification, "the certificate '{}' expired on {}", who,
                            bad ? not_after_of(a, bad) : info.not_after);
            case X509_V_ERR_CERT_NOT_YET_VALID:
                return fail(Errc::verification,
                            "the certificate '{}' is not valid yet (check the clock)", who);
            case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
            case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
            case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
            case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
            case X509_V_ERR_CERT_SIGNATURE_FAILURE:
                return fail(Errc::verification,
                            "signed by '{}', which does not chain to the keyring {}", info.subject,
                            keyring_pem);
            default:
                return fail(Errc::verification, "the signer '{}' is not trusted: {}", who,
                            a.X509_verify_cert_error_string(err));
        }
    }
    // 3. What the signer may sign.
    const uint32_t flags = a.X509_get_extension_flags(signer);
    if ((flags & EXFLAG_KUSAGE) && !(a.X509_get_key_usage(signer) & KU_DIGITAL_SIGNATURE))
        return fail(Errc::verification, "the signer '{}' lacks the digitalSignature key usage",
                    info.subject);
    if ((flags & EXFLAG_XKUSAGE) && !(a.X509_get_extended_key_usage(signer) & XKU_CODE_SIGN))
        return fail(Errc::verification,
                    "the signer '{}' has an extended key usage without codeSigning", info.subject);
    return info;
}

}  // namespace ballast::update
