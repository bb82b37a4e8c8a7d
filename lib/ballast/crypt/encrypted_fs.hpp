// A new encrypted partition without device-mapper (so images can be installed on a build host
// and on this machine): the LUKS2 header, TPM2 token and recovery key are made on a sparse file,
// the ext4 filesystem in another, and its written extents are encrypted in userspace exactly as
// dm-crypt would (aes-xts-plain64, 512-byte sectors, the sector number as tweak), then copied
// into the partition's byte range.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "ballast/core/result.hpp"
#include "ballast/crypt/keys.hpp"

namespace ballast::crypt {

struct EncryptedFs {
    std::string uuid;  // the LUKS2 header's
    RecoveryKey recovery;
    Enrolled tpm;
};

// `tmpdir` holds the scratch files (sparse: they cost the written bytes only).
[[nodiscard]] Result<EncryptedFs> make_encrypted_ext4(const std::string& device, uint64_t offset,
                                                      uint64_t size, const std::string& label,
                                                      Tpm2& tpm, PcrBank bank, PcrMask pcrs,
                                                      const std::string& tmpdir);

// Encrypts `n` bytes (whole 512-byte sectors) in place; `first_sector` numbers the first one from
// the start of the data segment. Decrypts with `decrypt` (tests read the result back).
[[nodiscard]] Status xts_plain64(const SecretBytes& volume_key, uint64_t first_sector,
                                 uint8_t* data, size_t n, bool decrypt = false);

}  // namespace ballast::crypt
