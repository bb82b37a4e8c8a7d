#include "ballast/crypt/pcr_key.hpp"

#include <openssl/core_names.h>

#include "ballast/core/bytes.hpp"
#include "ballast/core/openssl.hpp"
#include "ballast/core/sha256.hpp"
#include "ballast/crypt/policy.hpp"

namespace ballast::crypt {
namespace {

// TPM 2.0 part 2: TPM_ALG_ID (table 9) and TPMA_OBJECT bits (table 31).
constexpr uint16_t kAlgRsa = 0x0001;
constexpr uint16_t kAlgSha256 = 0x000B;
constexpr uint16_t kAlgNull = 0x0010;
constexpr uint32_t kUserWithAuth = 1u << 6;
constexpr uint32_t kDecrypt = 1u << 17;
constexpr uint32_t kSignEncrypt = 1u << 18;
constexpr uint32_t kDefaultExponent = 65537;
// TPM2B_PUBLIC_KEY_RSA holds at most TPM2_MAX_RSA_KEY_BYTES (4096-bit keys).
constexpr size_t kMaxModulusBytes = 512;

Result<std::string> bn_bytes(const ossl::Api& a, const EVP_PKEY* key, const char* param,
                             std::string_view what) {
    BIGNUM* raw = nullptr;
    if (a.EVP_PKEY_get_bn_param(key, param, &raw) != 1 || !raw)
        return fail(Errc::parse, "{}: the RSA key has no {} ({})", what, param, ossl::errors(a));
    ossl::Own<BIGNUM> bn(raw, [&a](BIGNUM* b) { a.BN_free(b); });
    std::string out(size_t(a.BN_num_bits(bn.get()) + 7) / 8, '\0');
    if (out.empty() ||
        a.BN_bn2bin(bn.get(), reinterpret_cast<unsigned char*>(out.data())) != int(out.size()))
        return fail(Errc::parse, "{}: the RSA key's {} is empty", what, param);
    return out;
}

// SHA-256 of i2d_PublicKey(): for RSA the PKCS#1 RSAPublicKey DER, what systemd's
// pubkey_fingerprint() hashes.
Result<Digest> fingerprint_of(const ossl::Api& a, EVP_PKEY* key, std::string_view what) {
    int size = a.i2d_PublicKey(key, nullptr);
    if (size <= 0) return fail(Errc::parse, "{}: cannot encode the key: {}", what, ossl::errors(a));
    std::string der(size_t(size), '\0');
    auto* p = reinterpret_cast<unsigned char*>(der.data());
    if (a.i2d_PublicKey(key, &p) != size)
        return fail(Errc::parse, "{}: cannot encode the key: {}", what, ossl::errors(a));
    return sha256_digest(der);
}

Result<std::string> rsa_sign_sha256(const ossl::Api& a, EVP_PKEY* key, std::string_view data,
                                    std::string_view what) {
    ossl::Own<EVP_MD_CTX> ctx(a.EVP_MD_CTX_new(), [&a](EVP_MD_CTX* c) { a.EVP_MD_CTX_free(c); });
    if (!ctx) return fail(Errc::failed, "{}: out of memory", what);
    size_t size = 0;
    const auto* in = reinterpret_cast<const unsigned char*>(data.data());
    if (a.EVP_DigestSignInit(ctx.get(), nullptr, a.EVP_sha256(), nullptr, key) != 1 ||
        a.EVP_DigestSign(ctx.get(), nullptr, &size, in, data.size()) != 1)
        return fail(Errc::failed, "{}: cannot sign: {}", what, ossl::errors(a));
    std::string sig(size, '\0');
    if (a.EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &size, in,
                         data.size()) != 1)
        return fail(Errc::failed, "{}: cannot sign: {}", what, ossl::errors(a));
    sig.resize(size);
    return sig;
}

Status require_rsa(const ossl::Api& a, const EVP_PKEY* key, std::string_view what) {
    if (a.EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA)
        return fail(Errc::unsupported,
                    "{}: not an RSA key; signed PCR policies take RSA keys (as systemd 252)", what);
    return {};
}

// The token keeps the text as given (as systemd does), in a LUKS2 header anyone can read: one
// public key block and nothing else, so a private key pasted into the same file never goes
// there.
Status require_one_public_block(std::string_view pem, std::string_view what) {
    constexpr std::string_view begin = "-----BEGIN ";
    const size_t first = pem.find(begin);
    if (first == std::string_view::npos ||
        pem.substr(first).substr(0, 26) != "-----BEGIN PUBLIC KEY-----" ||
        pem.find(begin, first + begin.size()) != std::string_view::npos)
        return fail(Errc::parse,
                    "{}: not a PEM public key (one BEGIN PUBLIC KEY block and nothing else)", what);
    return {};
}

}  // namespace

Result<PcrSignature> sign_pcr_policy(std::string_view private_key_pem, std::string_view what,
                                     PcrBank bank, PcrMask pcrs,
                                     std::span<const std::string> values) {
    const ossl::Api& a = *BALLAST_TRY(ossl::api());
    auto bio = BALLAST_TRY(ossl::mem_bio(a, private_key_pem));
    ossl::Own<EVP_PKEY> key(a.PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr),
                            [&a](EVP_PKEY* k) { a.EVP_PKEY_free(k); });
    if (!key) return fail(Errc::parse, "{}: not a PEM private key: {}", what, ossl::errors(a));
    BALLAST_TRY(require_rsa(a, key.get(), what));
    PcrSignature out;
    out.bank = bank;
    out.pcrs = pcrs;
    out.key_fingerprint = BALLAST_TRY(fingerprint_of(a, key.get(), what));
    out.policy = BALLAST_TRY(policy_pcr(Digest{}, bank, pcrs, values));
    out.signature = BALLAST_TRY(rsa_sign_sha256(
        a, key.get(), {reinterpret_cast<const char*>(out.policy.data()), out.policy.size()}, what));
    return out;
}

Result<bool> verify_pcr_signature(const PcrPublicKey& key, const PcrSignature& sig) {
    if (sig.key_fingerprint != key.fingerprint) return false;
    const ossl::Api& a = *BALLAST_TRY(ossl::api());
    auto bio = BALLAST_TRY(ossl::mem_bio(a, key.pem));
    ossl::Own<EVP_PKEY> pkey(a.PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr),
                             [&a](EVP_PKEY* k) { a.EVP_PKEY_free(k); });
    ossl::Own<EVP_MD_CTX> ctx(a.EVP_MD_CTX_new(), [&a](EVP_MD_CTX* c) { a.EVP_MD_CTX_free(c); });
    if (!pkey || !ctx ||
        a.EVP_DigestVerifyInit(ctx.get(), nullptr, a.EVP_sha256(), nullptr, pkey.get()) != 1)
        return fail(Errc::failed, "verify a PCR signature: {}", ossl::errors(a));
    int ok =
        a.EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.signature.data()),
                           sig.signature.size(), sig.policy.data(), sig.policy.size());
    a.ERR_clear_error();  // a bad signature queues a reason; the answer is `false`
    return ok == 1;
}

Result<PcrPublicKey> parse_pcr_public_key(std::string_view pem, std::string_view what) {
    BALLAST_TRY(require_one_public_block(pem, what));
    const ossl::Api& a = *BALLAST_TRY(ossl::api());
    auto bio = BALLAST_TRY(ossl::mem_bio(a, pem));
    ossl::Own<EVP_PKEY> key(a.PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr),
                            [&a](EVP_PKEY* k) { a.EVP_PKEY_free(k); });
    if (!key)
        return fail(Errc::parse, "{}: not a PEM public key (BEGIN PUBLIC KEY): {}", what,
                    ossl::errors(a));
    BALLAST_TRY(require_rsa(a, key.get(), what));
    PcrPublicKey out;
    out.pem = std::string(pem);
    out.modulus = BALLAST_TRY(bn_bytes(a, key.get(), OSSL_PKEY_PARAM_RSA_N, what));
    if (out.modulus.size() > kMaxModulusBytes)
        return fail(Errc::unsupported, "{}: a {}-bit RSA key is larger than a TPM takes (4096)",
                    what, out.modulus.size() * 8);
    std::string e = BALLAST_TRY(bn_bytes(a, key.get(), OSSL_PKEY_PARAM_RSA_E, what));
    if (e.size() > 4)
        return fail(Errc::unsupported, "{}: the RSA exponent does not fit 32 bits", what);
    for (char c : e)
        out.exponent = out.exponent << 8 | uint8_t(c);
    out.fingerprint = BALLAST_TRY(fingerprint_of(a, key.get(), what));
    return out;
}

std::string tpmt_public(const PcrPublicKey& key, ExponentForm form) {
    std::string out;
    put_be<uint16_t>(out, kAlgRsa);
    put_be<uint16_t>(out, kAlgSha256);
    put_be<uint32_t>(out, kDecrypt | kSignEncrypt | kUserWithAuth);
    put_be<uint16_t>(out, 0);         // authPolicy: empty
    put_be<uint16_t>(out, kAlgNull);  // symmetric
    put_be<uint16_t>(out, kAlgNull);  // scheme
    put_be<uint16_t>(out, uint16_t(key.modulus.size() * 8));
    put_be<uint32_t>(out, form == ExponentForm::default_zero && key.exponent == kDefaultExponent
                              ? 0
                              : key.exponent);
    put_be<uint16_t>(out, uint16_t(key.modulus.size()));
    out += key.modulus;
    return out;
}

Result<std::string> tpm_name(const PcrPublicKey& key, ExponentForm form) {
    auto digest = BALLAST_TRY(sha256_digest(tpmt_public(key, form)));
    std::string out;
    put_be<uint16_t>(out, kAlgSha256);
    out.append(reinterpret_cast<const char*>(digest.data()), digest.size());
    return out;
}

}  // namespace ballast::crypt
