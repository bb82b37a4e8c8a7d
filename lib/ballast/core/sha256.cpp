#include "ballast/core/sha256.hpp"

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

Result<Sha256> Sha256::make() {
    const auto* api = BALLAST_TRY(ossl::api());
    return Sha256(std::make_unique<Impl>(*api));
}

Sha256::Sha256(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::update(std::span<const uint8_t> data) {
    impl_->a.EVP_DigestUpdate(impl_->ctx, data.data(), data.size());
}

std::array<uint8_t, 32> Sha256::digest() {
    std::array<uint8_t, 32> md{};
    unsigned len = 0;
    impl_->a.EVP_DigestFinal_ex(impl_->ctx, md.data(), &len);
    return md;
}

std::string Sha256::hex() {
    auto md = digest();
    return to_hex(md);
}

Result<std::string> sha256_hex(std::string_view data) {
    auto h = BALLAST_TRY(Sha256::make());
    h.update(data);
    return h.hex();
}

Result<std::array<uint8_t, 32>> sha256_digest(std::string_view data) {
    auto h = BALLAST_TRY(Sha256::make());
    h.update(data);
    return h.digest();
}

}  // namespace ballast
