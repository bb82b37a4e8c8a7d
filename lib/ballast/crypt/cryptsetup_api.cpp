#include "ballast/crypt/cryptsetup_api.hpp"

#include "ballast/core/log.hpp"

namespace ballast::crypt::cs {

namespace {

// libcryptsetup's messages go to our log: errors name the device and keyslot.
void log_cb(int level, const char* msg, void*) {
    std::string_view m(msg);
    while (!m.empty() && m.back() == '\n')
        m.remove_suffix(1);
    if (level == CRYPT_LOG_ERROR)
        spdlog::warn("libcryptsetup: {}", m);
    else
        spdlog::debug("libcryptsetup: {}", m);
}

}  // namespace

Result<const Api*> api() {
    return dynlib::once<Api>([](Api& a) -> Status {
        BALLAST_TRY(dynlib::load_symbols("libcryptsetup.so.12", "libcryptsetup12",
                                         {BALLAST_CRYPTSETUP(BALLAST_DYNLIB_SYMBOL)}));
        a.crypt_set_log_callback(nullptr, log_cb, nullptr);
        // Ballast reads its tokens itself: loading systemd's plugins (and libsystemd-shared)
        // for every token listing cost 3.7 ms per unlock (docs/performance.md).
        a.crypt_token_external_disable();
        return {};
    });
}

}  // namespace ballast::crypt::cs
