#include "ballast/core/openssl.hpp"

#include <climits>

namespace ballast::ossl {

Result<const Api*> api() {
    return dynlib::once<Api>([](Api& a) {
        return dynlib::load_symbols("libcrypto.so.3", "libssl3",
                                    {BALLAST_OSSL_FUNCTIONS(BALLAST_DYNLIB_SYMBOL)});
    });
}

Result<Own<BIO>> mem_bio(const Api& a, std::string_view data) {
    if (data.size() > size_t(INT_MAX)) return fail(Errc::invalid_argument, "input too large");
    BIO* b = a.BIO_new_mem_buf(data.data(), int(data.size()));
    if (!b) return fail(Errc::failed, "BIO_new_mem_buf failed");
    return Own<BIO>(b, [&a](BIO* x) { a.BIO_free(x); });
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
