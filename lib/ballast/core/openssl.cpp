#include "ballast/core/openssl.hpp"

#include <dlfcn.h>

#include <mutex>
#include <stdexcept>

namespace ballast::ossl {

Result<const Api*> api() {
    static Api a;
    static std::string error;
    static std::once_flag once;
    std::call_once(once, [] {
        void* h = ::dlopen("libcrypto.so.3", RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            error = std::string("cannot load libcrypto.so.3 (install libssl3): ") + ::dlerror();
            return;
        }
        bool ok = true;
        auto load = [&](auto& fn, const char* name) {
            fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(::dlsym(h, name));
            if (!fn) {
                ok = false;
                error = std::string("libcrypto.so.3 has no ") + name;
            }
        };
#define BALLAST_OSSL_LOAD(name) load(a.name, #name);
        BALLAST_OSSL_LOAD(EVP_MD_CTX_new)
        BALLAST_OSSL_LOAD(EVP_MD_CTX_free)
        BALLAST_OSSL_LOAD(EVP_sha256)
        BALLAST_OSSL_LOAD(EVP_DigestInit_ex)
        BALLAST_OSSL_LOAD(EVP_DigestUpdate)
        BALLAST_OSSL_LOAD(EVP_DigestFinal_ex)
        BALLAST_OSSL_LOAD(PKCS5_PBKDF2_HMAC)
        BALLAST_OSSL_LOAD(EVP_PKEY_free)
        BALLAST_OSSL_LOAD(BIO_new_mem_buf)
        BALLAST_OSSL_LOAD(BIO_new)
        BALLAST_OSSL_LOAD(BIO_s_mem)
        BALLAST_OSSL_LOAD(BIO_free)
        BALLAST_OSSL_LOAD(BIO_ctrl)
        BALLAST_OSSL_LOAD(PEM_read_bio_X509)
        BALLAST_OSSL_LOAD(PEM_read_bio_PrivateKey)
        BALLAST_OSSL_LOAD(X509_free)
        BALLAST_OSSL_LOAD(X509_get_subject_name)
        BALLAST_OSSL_LOAD(X509_NAME_oneline)
        BALLAST_OSSL_LOAD(X509_get0_notAfter)
        BALLAST_OSSL_LOAD(ASN1_TIME_print)
        BALLAST_OSSL_LOAD(X509_get_extension_flags)
        BALLAST_OSSL_LOAD(X509_get_key_usage)
        BALLAST_OSSL_LOAD(X509_get_extended_key_usage)
        BALLAST_OSSL_LOAD(X509_STORE_new)
        BALLAST_OSSL_LOAD(X509_STORE_free)
        BALLAST_OSSL_LOAD(X509_STORE_add_cert)
        BALLAST_OSSL_LOAD(X509_STORE_CTX_new)
        BALLAST_OSSL_LOAD(X509_STORE_CTX_free)
        BALLAST_OSSL_LOAD(X509_STORE_CTX_init)
        BALLAST_OSSL_LOAD(X509_STORE_CTX_get_error)
        BALLAST_OSSL_LOAD(X509_STORE_CTX_get_current_cert)
        BALLAST_OSSL_LOAD(X509_verify_cert)
        BALLAST_OSSL_LOAD(X509_verify_cert_error_string)
        BALLAST_OSSL_LOAD(OPENSSL_sk_new_null)
        BALLAST_OSSL_LOAD(OPENSSL_sk_push)
        BALLAST_OSSL_LOAD(OPENSSL_sk_num)
        BALLAST_OSSL_LOAD(OPENSSL_sk_value)
        BALLAST_OSSL_LOAD(OPENSSL_sk_free)
        BALLAST_OSSL_LOAD(CMS_sign)
        BALLAST_OSSL_LOAD(CMS_verify)
        BALLAST_OSSL_LOAD(CMS_get0_signers)
        BALLAST_OSSL_LOAD(CMS_ContentInfo_free)
        BALLAST_OSSL_LOAD(i2d_CMS_bio)
        BALLAST_OSSL_LOAD(d2i_CMS_bio)
        BALLAST_OSSL_LOAD(CMS_get1_certs)
        BALLAST_OSSL_LOAD(ERR_get_error)
        BALLAST_OSSL_LOAD(ERR_error_string_n)
        BALLAST_OSSL_LOAD(ERR_clear_error)
#undef BALLAST_OSSL_LOAD
        if (!ok) a.EVP_MD_CTX_new = nullptr;
    });
    if (!a.EVP_MD_CTX_new) return fail(Errc::unsupported, "{}", error);
    return &a;
}

const Api& required() {
    auto a = api();
    if (!a) throw std::runtime_error(a.error().what());
    return **a;
}

std::string errors(const Api& a) {
    std::string out;
    while (unsigned long e = a.ERR_get_error()) {
        char buf[256];
        a.ERR_error_string_n(e, buf, sizeof buf);
        if (!out.empty()) out += "; ";
        out += buf;
    }
    return out.empty() ? "unknown OpenSSL error" : out;
}

}  // namespace ballast::ossl
