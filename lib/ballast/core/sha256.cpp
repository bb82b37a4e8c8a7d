#include "ballast/core/sha256.hpp"

#include <dlfcn.h>

#include <mutex>

#include "ballast/core/encoding.hpp"

// OpenSSL's libcrypto is loaded with dlopen() on first use, like libcurl: linking it would cost
// the long-running daemon ~400 kB of relocated tables at every start although it hashes only
// during downloads (docs/performance.md). Only the EVP digest entry points are used.
namespace ballast {
namespace {

struct Evp {
    void* (*ctx_new)();
    void (*ctx_free)(void*);
    const void* (*sha256)();
    int (*init)(void*, const void*, void*);
    int (*update)(void*, const void*, size_t);
    int (*final)(void*, unsigned char*, unsigned int*);
};

const Evp& evp() {
    static Evp e{};
    static std::once_flag once;
    std::call_once(once, [] {
        void* h = ::dlopen("libcrypto.so.3", RTLD_NOW | RTLD_LOCAL);
        if (!h) return;
        e.ctx_new = reinterpret_cast<decltype(e.ctx_new)>(::dlsym(h, "EVP_MD_CTX_new"));
        e.ctx_free = reinterpret_cast<decltype(e.ctx_free)>(::dlsym(h, "EVP_MD_CTX_free"));
        e.sha256 = reinterpret_cast<decltype(e.sha256)>(::dlsym(h, "EVP_sha256"));
        e.init = reinterpret_cast<decltype(e.init)>(::dlsym(h, "EVP_DigestInit_ex"));
        e.update = reinterpret_cast<decltype(e.update)>(::dlsym(h, "EVP_DigestUpdate"));
        e.final = reinterpret_cast<decltype(e.final)>(::dlsym(h, "EVP_DigestFinal_ex"));
    });
    if (!e.ctx_new || !e.ctx_free || !e.sha256 || !e.init || !e.update || !e.final)
        throw std::runtime_error(
            "libcrypto.so.3 (libssl3) is needed for SHA-256 and could not be loaded");
    return e;
}

}  // namespace

struct Sha256::Impl {
    const Evp& e = evp();
    void* ctx = e.ctx_new();
    ~Impl() { e.ctx_free(ctx); }
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {
    impl_->e.init(impl_->ctx, impl_->e.sha256(), nullptr);
}
Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::update(std::span<const uint8_t> data) {
    impl_->e.update(impl_->ctx, data.data(), data.size());
}

std::string Sha256::hex() {
    unsigned char md[64];
    unsigned len = 0;
    impl_->e.final(impl_->ctx, md, &len);
    return to_hex(std::span<const uint8_t>(md, len));
}

std::string sha256_hex(std::string_view data) {
    Sha256 h;
    h.update(data);
    return h.hex();
}

}  // namespace ballast
