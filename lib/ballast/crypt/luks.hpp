// A LUKS2 header through libcryptsetup (dlopen()ed on first use: it pulls in libcrypto). Works
// on a block device or a regular image file; everything but activate() needs no device-mapper.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ballast/core/result.hpp"
#include "ballast/core/secret.hpp"

namespace ballast::crypt {

struct KeyslotInfo {
    int slot = -1;
    std::string pbkdf;  // "pbkdf2", "argon2id", ...
};

struct TokenInfo {
    int id = -1;
    std::string type;  // "systemd-tpm2", "systemd-recovery", ...
    std::string json;
};

class Luks {
  public:
    // A new LUKS2 header (aes-xts-plain64) on `path` with `volume_key` and no keyslot yet.
    [[nodiscard]] static Result<Luks> format(const std::string& path, const SecretBytes& volume_key,
                                             std::string_view label);
    // Errc::not_found when `path` holds no LUKS2 header.
    [[nodiscard]] static Result<Luks> open(const std::string& path);
    Luks(Luks&&) noexcept;
    Luks& operator=(Luks&&) noexcept;
    ~Luks();

    [[nodiscard]] const std::string& path() const noexcept { return path_; }
    [[nodiscard]] std::string uuid() const;
    [[nodiscard]] size_t volume_key_size() const;
    // Where the encrypted data starts, in bytes from the header.
    [[nodiscard]] uint64_t data_offset() const;

    // The volume key, from any keyslot `passphrase` opens; Errc::permission_denied if none does.
    [[nodiscard]] Result<SecretBytes> volume_key(std::string_view passphrase);
    // The keyslot `passphrase` opens (no activation).
    [[nodiscard]] Result<int> check_passphrase(std::string_view passphrase, int keyslot = -1);
    // Maps the volume as /dev/mapper/`name` (needs dm-crypt).
    [[nodiscard]] Status activate(const std::string& name, std::string_view passphrase,
                                  int keyslot = -1);

    // A keyslot for a high-entropy passphrase (TPM secret, recovery key), with systemd's minimal
    // PBKDF (PBKDF2-SHA512, 1000 iterations): brute force is hopeless anyway, and unlock is fast.
    [[nodiscard]] Result<int> add_keyslot(const SecretBytes& volume_key,
                                          std::string_view passphrase);
    [[nodiscard]] Status destroy_keyslot(int slot);
    [[nodiscard]] Result<int> add_token(const std::string& json);
    [[nodiscard]] Status remove_token(int id);

    [[nodiscard]] std::vector<KeyslotInfo> keyslots() const;
    [[nodiscard]] std::vector<TokenInfo> tokens() const;

    struct Device;

  private:
    Luks(std::unique_ptr<Device> d, std::string path);
    std::unique_ptr<Device> d_;
    std::string path_;
};

}  // namespace ballast::crypt
