// libcrypto (OpenSSL 3), loaded with dlopen() on first use: the long-running daemon maps it only
// in the jobs that hash or check signatures (docs/performance.md). One table of the entry points
// Ballast uses; types and constants come from OpenSSL's headers.
#pragma once

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "ballast/core/dynlib.hpp"
#include "ballast/core/result.hpp"

namespace ballast::ossl {

#define BALLAST_OSSL_FUNCTIONS(X)      \
    X(EVP_MD_CTX_new)                  \
    X(EVP_MD_CTX_free)                 \
    X(EVP_sha256)                      \
    X(EVP_DigestInit_ex)               \
    X(EVP_DigestUpdate)                \
    X(EVP_DigestFinal_ex)              \
    X(PKCS5_PBKDF2_HMAC)               \
    X(EVP_PKEY_free)                   \
    X(BIO_new_mem_buf)                 \
    X(BIO_new)                         \
    X(BIO_s_mem)                       \
    X(BIO_free)                        \
    X(BIO_ctrl)                        \
    X(PEM_read_bio_X509)               \
    X(PEM_read_bio_PrivateKey)         \
    X(X509_free)                       \
    X(X509_get_subject_name)           \
    X(X509_NAME_oneline)               \
    X(X509_get0_notAfter)              \
    X(ASN1_TIME_print)                 \
    X(X509_get_extension_flags)        \
    X(X509_get_key_usage)              \
    X(X509_get_extended_key_usage)     \
    X(X509_STORE_new)                  \
    X(X509_STORE_free)                 \
    X(X509_STORE_add_cert)             \
    X(X509_STORE_CTX_new)              \
    X(X509_STORE_CTX_free)             \
    X(X509_STORE_CTX_init)             \
    X(X509_STORE_CTX_get_error)        \
    X(X509_STORE_CTX_get_current_cert) \
    X(X509_verify_cert)                \
    X(X509_verify_cert_error_string)   \
    X(OPENSSL_sk_new_null)             \
    X(OPENSSL_sk_push)                 \
    X(OPENSSL_sk_num)                  \
    X(OPENSSL_sk_value)                \
    X(OPENSSL_sk_free)                 \
    X(CMS_sign)                        \
    X(CMS_verify)                      \
    X(CMS_get0_signers)                \
    X(CMS_ContentInfo_free)            \
    X(i2d_CMS_bio)                     \
    X(d2i_CMS_bio)                     \
    X(CMS_get1_certs)                  \
    X(ERR_get_error)                   \
    X(ERR_error_string_n)              \
    X(ERR_clear_error)                 \
    X(EVP_CIPHER_CTX_new)              \
    X(EVP_CIPHER_CTX_free)             \
    X(EVP_aes_256_xts)                 \
    X(EVP_EncryptInit_ex)              \
    X(EVP_EncryptUpdate)               \
    X(EVP_DecryptInit_ex)              \
    X(EVP_DecryptUpdate)               \
    X(PEM_read_bio_PUBKEY)             \
    X(EVP_PKEY_get_base_id)            \
    X(EVP_PKEY_get_bn_param)           \
    X(BN_num_bits)                     \
    X(BN_bn2bin)                       \
    X(BN_free)                         \
    X(i2d_PublicKey)                   \
    X(EVP_DigestSignInit)              \
    X(EVP_DigestSign)                  \
    X(EVP_DigestVerifyInit)            \
    X(EVP_DigestVerify)                \
    X(d2i_PKCS7)                       \
    X(PKCS7_free)                      \
    X(PKCS7_verify)                    \
    X(PKCS7_get0_signers)              \
    X(OBJ_obj2txt)                     \
    X(OBJ_obj2nid)                     \
    X(CRYPTO_free)                     \
    X(X509_STORE_set_flags)            \
    X(X509_STORE_set_purpose)          \
    X(d2i_X509)                        \
    X(i2d_X509)                        \
    X(i2d_re_X509_tbs)

struct Api {
    BALLAST_OSSL_FUNCTIONS(BALLAST_DYNLIB_DECLARE)
};

// The table, loaded once; Errc::unsupported naming the package when libcrypto.so.3 is missing.
[[nodiscard]] Result<const Api*> api();

// An OpenSSL object freed by its own function from the table.
template <class T>
using Own = std::unique_ptr<T, std::function<void(T*)>>;

// A read-only memory BIO over `data`, which must outlive it.
[[nodiscard]] Result<Own<BIO>> mem_bio(const Api& a, std::string_view data);

// The reasons OpenSSL queued, joined ("...; ..."), and the queue cleared.
[[nodiscard]] std::string errors(const Api& a);

}  // namespace ballast::ossl
