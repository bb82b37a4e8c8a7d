#include "ballast/core/openssl.hpp"

#include <mutex>

namespace ballast::ossl {

Result<const Api*> api() {
    static Api a;
    static Status loaded = fail(Errc::failed, "not loaded");
    static std::once_flag once;
    std::call_once(once, [] {
        loaded = dynlib::load_symbols("libcrypto.so.3", "libssl3",
                                      {BALLAST_OSSL_FUNCTIONS(BALLAST_DYNLIB_SYMBOL)});
    });
    if (!loaded) return std::unexpected(loaded.error());
    return &a;
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
