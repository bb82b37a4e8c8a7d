// libcryptsetup, loaded with dlopen() on first use (it links libcrypto, which the daemon maps
// only in the jobs that need it).
#pragma once

#include <libcryptsetup.h>

#include "ballast/core/dynlib.hpp"
#include "ballast/core/result.hpp"

namespace ballast::crypt::cs {

#define BALLAST_CRYPTSETUP(X)          \
    X(crypt_init)                      \
    X(crypt_init_data_device)          \
    X(crypt_activate_by_volume_key)    \
    X(crypt_free)                      \
    X(crypt_load)                      \
    X(crypt_format)                    \
    X(crypt_set_pbkdf_type)            \
    X(crypt_set_log_callback)          \
    X(crypt_get_uuid)                  \
    X(crypt_get_volume_key_size)       \
    X(crypt_get_data_offset)           \
    X(crypt_volume_key_get)            \
    X(crypt_activate_by_passphrase)    \
    X(crypt_keyslot_add_by_volume_key) \
    X(crypt_keyslot_destroy)           \
    X(crypt_keyslot_status)            \
    X(crypt_keyslot_max)               \
    X(crypt_keyslot_get_pbkdf)         \
    X(crypt_token_json_set)            \
    X(crypt_token_json_get)            \
    X(crypt_token_status)              \
    X(crypt_token_max)                 \
    X(crypt_token_external_disable)

struct Api {
    BALLAST_CRYPTSETUP(BALLAST_DYNLIB_DECLARE)
};

[[nodiscard]] Result<const Api*> api();

// A crypt_device and the table that frees it.
struct Device {
    const Api* api = nullptr;
    crypt_device* cd = nullptr;
    Device() = default;
    Device(const Device&) = delete;
    Device& operator=(const Device&) = delete;
    ~Device() {
        if (cd) api->crypt_free(cd);
    }
};

}  // namespace ballast::crypt::cs
