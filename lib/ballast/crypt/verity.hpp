// dm-verity hash trees for slot images, written and checked in user space with libcryptsetup
// (no device-mapper needed): the tree follows the image in the same file or partition, after a
// verity superblock, as `veritysetup format --hash-offset` lays it out, so `veritysetup verify`
// and the kernel read it as they read their own.
#pragma once

#include <cstdint>
#include <string>

#include "ballast/core/result.hpp"

namespace ballast::crypt {

inline constexpr uint64_t kVerityBlock = 4096;  // data and hash blocks, as the kernel pages

// What a manifest records to open or check a slot: enough, with the root hash it signs, that
// nothing on the disk has to be trusted.
struct Verity {
    std::string root_hash;     // hex, SHA-256
    std::string salt;          // hex
    std::string uuid;          // the superblock's
    uint64_t data_blocks = 0;  // kVerityBlock-sized blocks of image covered
    uint64_t hash_offset = 0;  // bytes from the start of the file or partition to the superblock
};

// The bytes the hash area takes (superblock included) for `data_blocks` blocks.
[[nodiscard]] uint64_t verity_hash_size(uint64_t data_blocks) noexcept;

// Formats the tree for the first `data_size` bytes of `path` (a positive multiple of
// kVerityBlock) at `hash_offset` (kVerityBlock-aligned, not before the data's end), with a
// random salt.
[[nodiscard]] Result<Verity> verity_format(const std::string& path, uint64_t data_size,
                                           uint64_t hash_offset);

// Reads every data and hash block of `path` (a file or a device) and checks them against `v`,
// which the caller trusts: the superblock on the disk is not read at all. Errc::verification
// when a block does not match.
[[nodiscard]] Status verity_verify(const std::string& path, const Verity& v);

}  // namespace ballast::crypt
