#include "ballast/core/sha256.hpp"

#include <stdexcept>

#include "ballast/core/encoding.hpp"
#include "ballast/core/openssl.hpp"

namespace ballast {

struct Sha256::Impl {
    const ossl::Api& a;
    EVP_MD_CTX* ctx;
    explicit Impl(const ossl::Api& api) : a(api), ctx(api.EVP_MD_CTX_new()) {
        a.EVP_DigestInit_ex(ctx, a.EVP_sha256(), nullptr);
    }
    ~Impl() { a.EVP_MD_CTX_free(ctx); }
};

namespace {
const ossl::Api& required() {
    auto a = ossl::api();
    // Hashing is never optional where it is used; a node without libssl3 is broken.
    if (!a) throw std::runtime_error(a.error().what());
    return **a;
}
}  // namespace

Sha256::Sha256() : impl_(std::make_unique<Impl>(required())) {}
Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::update(std::span<const uint8_t> data) {
    impl_->a.EVP_DigestUpdate(impl_->ctx, data.data(), data.size());
}

std::string Sha256::hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    impl_->a.EVP_DigestFinal_ex(impl_->ctx, md, &len);
    return to_hex(std::span<const uint8_t>(md, len));
}

std::string sha256_hex(std::string_view data) {
    Sha256 h;
    h.update(data);
    return h.hex();
}

}  // namespace ballast
