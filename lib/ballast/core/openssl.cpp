#include "ballast/core/openssl.hpp"

namespace ballast::ossl {

Result<const Api*> api() {
    return dynlib::once<Api>([](Api& a) {
        return dynlib::load_symbols("libcrypto.so.3", "libssl3",
                                    {BALLAST_OSSL_FUNCTIONS(BALLAST_DYNLIB_SYMBOL)});
    });
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
