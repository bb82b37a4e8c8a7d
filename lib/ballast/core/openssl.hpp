// libcrypto (OpenSSL 3), loaded with dlopen() on first use: the long-running daemon maps it only
// in the jobs that hash or check signatures (docs/performance.md). One table of the entry points
// Ballast uses; types and constants come from OpenSSL's headers.
#pragma once

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <string>

#include "ballast/core/result.hpp"

namespace ballast::ossl {

struct Api {
#define BALLAST_OSSL_FN(name) decltype(&::name) name = nullptr;
    BALLAST_OSSL_FN(EVP_MD_CTX_new)
    BALLAST_OSSL_FN(EVP_MD_CTX_free)
    BALLAST_OSSL_FN(EVP_sha256)
    BALLAST_OSSL_FN(EVP_DigestInit_ex)
    BALLAST_OSSL_FN(EVP_DigestUpdate)
    BALLAST_OSSL_FN(EVP_DigestFinal_ex)
    BALLAST_OSSL_FN(PKCS5_PBKDF2_HMAC)
    BALLAST_OSSL_FN(EVP_PKEY_free)
    BALLAST_OSSL_FN(BIO_new_mem_buf)
    BALLAST_OSSL_FN(BIO_new)
    BALLAST_OSSL_FN(BIO_s_mem)
    BALLAST_OSSL_FN(BIO_free)
    BALLAST_OSSL_FN(BIO_ctrl)
    BALLAST_OSSL_FN(PEM_read_bio_X509)
    BALLAST_OSSL_FN(PEM_read_bio_PrivateKey)
    BALLAST_OSSL_FN(X509_free)
    BALLAST_OSSL_FN(X509_get_subject_name)
    BALLAST_OSSL_FN(X509_NAME_oneline)
    BALLAST_OSSL_FN(X509_get0_notAfter)
    BALLAST_OSSL_FN(ASN1_TIME_print)
    BALLAST_OSSL_FN(X509_get_extension_flags)
    BALLAST_OSSL_FN(X509_get_key_usage)
    BALLAST_OSSL_FN(X509_get_extended_key_usage)
    BALLAST_OSSL_FN(X509_STORE_new)
    BALLAST_OSSL_FN(X509_STORE_free)
    BALLAST_OSSL_FN(X509_STORE_add_cert)
    BALLAST_OSSL_FN(X509_STORE_CTX_new)
    BALLAST_OSSL_FN(X509_STORE_CTX_free)
    BALLAST_OSSL_FN(X509_STORE_CTX_init)
    BALLAST_OSSL_FN(X509_STORE_CTX_get_error)
    BALLAST_OSSL_FN(X509_STORE_CTX_get_current_cert)
    BALLAST_OSSL_FN(X509_verify_cert)
    BALLAST_OSSL_FN(X509_verify_cert_error_string)
    BALLAST_OSSL_FN(OPENSSL_sk_new_null)
    BALLAST_OSSL_FN(OPENSSL_sk_push)
    BALLAST_OSSL_FN(OPENSSL_sk_num)
    BALLAST_OSSL_FN(OPENSSL_sk_value)
    BALLAST_OSSL_FN(OPENSSL_sk_free)
    BALLAST_OSSL_FN(CMS_sign)
    BALLAST_OSSL_FN(CMS_verify)
    BALLAST_OSSL_FN(CMS_get0_signers)
    BALLAST_OSSL_FN(CMS_ContentInfo_free)
    BALLAST_OSSL_FN(i2d_CMS_bio)
    BALLAST_OSSL_FN(d2i_CMS_bio)
    BALLAST_OSSL_FN(CMS_get1_certs)
    BALLAST_OSSL_FN(ERR_get_error)
    BALLAST_OSSL_FN(ERR_error_string_n)
    BALLAST_OSSL_FN(ERR_clear_error)
#undef BALLAST_OSSL_FN
};

// The table, loaded once; Errc::unsupported naming the package when libcrypto.so.3 is missing.
[[nodiscard]] Result<const Api*> api();
// The table where hashing is never optional (a node without libssl3 is broken): throws
// std::runtime_error with api()'s message instead.
[[nodiscard]] const Api& required();

// The reasons OpenSSL queued, joined ("...; ..."), and the queue cleared.
[[nodiscard]] std::string errors(const Api& a);

}  // namespace ballast::ossl
