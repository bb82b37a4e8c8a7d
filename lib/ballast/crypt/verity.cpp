#include "ballast/crypt/verity.hpp"

#include <cerrno>
#include <memory>

#include "ballast/core/encoding.hpp"
#include "ballast/core/secret.hpp"
#include "ballast/crypt/cryptsetup_api.hpp"

namespace ballast::crypt {
namespace {

constexpr uint64_t kHashesPerBlock = kVerityBlock / 32;  // SHA-256
constexpr uint32_t kSaltSize = 32;

// The hash tree and data in the one file: libcryptsetup takes them as two devices.
Result<std::unique_ptr<cs::Device>> open_device(const std::string& path) {
    auto d = std::make_unique<cs::Device>();
    d->api = BALLAST_TRY(cs::api());
    if (int r = d->api->crypt_init_data_device(&d->cd, path.c_str(), path.c_str()); r < 0)
        return fail_errno(-r, path);
    return d;
}

crypt_params_verity params(const char* path, uint64_t data_blocks, uint64_t hash_offset,
                           const std::string& salt, uint32_t flags) {
    crypt_params_verity p{};
    p.hash_name = "sha256";
    p.data_device = path;
    p.salt = salt.data();
    p.salt_size = uint32_t(salt.size());
    p.hash_type = 1;  // the kernel's current format (salt before the data)
    p.data_block_size = kVerityBlock;
    p.hash_block_size = kVerityBlock;
    p.data_size = data_blocks;
    p.hash_area_offset = hash_offset;
    p.flags = flags;
    return p;
}

}  // namespace

uint64_t verity_hash_size(uint64_t data_blocks) noexcept {
    // The superblock's; one data block has no hash level at all (the root hash is its own, as
    // libcryptsetup's hash_levels() counts), so a one-block image ends with the superblock.
    uint64_t blocks = 1;
    for (uint64_t level = data_blocks; level > 1;) {
        level = (level + kHashesPerBlock - 1) / kHashesPerBlock;
        blocks += level;
    }
    return blocks * kVerityBlock;
}

Result<Verity> verity_format(const std::string& path, uint64_t data_size, uint64_t hash_offset) {
    if (data_size == 0 || data_size % kVerityBlock || hash_offset % kVerityBlock ||
        hash_offset < data_size)
        return fail(Errc::invalid_argument,
                    "{}: verity needs whole {}-byte blocks of data ({} bytes) and the hash area "
                    "after them, aligned (at {})",
                    path, kVerityBlock, data_size, hash_offset);
    std::string salt(kSaltSize, '\0');
    BALLAST_TRY(fill_random({reinterpret_cast<uint8_t*>(salt.data()), salt.size()}));
    auto d = BALLAST_TRY(open_device(path));
    auto p =
        params(path.c_str(), data_size / kVerityBlock, hash_offset, salt, CRYPT_VERITY_CREATE_HASH);
    if (int r =
            d->api->crypt_format(d->cd, CRYPT_VERITY, nullptr, nullptr, nullptr, nullptr, 0, &p);
        r < 0)
        return fail_errno(-r, path + ": format the verity hash tree");
    std::string root(32, '\0');
    size_t size = root.size();
    if (int r = d->api->crypt_volume_key_get(d->cd, CRYPT_ANY_SLOT, root.data(), &size, nullptr, 0);
        r < 0 || size != root.size())
        return fail_errno(r < 0 ? -r : EINVAL, path + ": read the verity root hash");
    const char* uuid = d->api->crypt_get_uuid(d->cd);
    const auto bytes = [](const std::string& s) {
        return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size());
    };
    return Verity{to_hex(bytes(root)), to_hex(bytes(salt)), uuid ? uuid : "",
                  data_size / kVerityBlock, hash_offset};
}

Status verity_verify(const std::string& path, const Verity& v) {
    const auto root = from_hex(v.root_hash);
    const auto salt = from_hex(v.salt);
    if (!root || root->size() != 32 || !salt || salt->empty() || salt->size() > 256 ||
        v.data_blocks == 0 || v.hash_offset % kVerityBlock ||
        v.hash_offset < v.data_blocks * kVerityBlock)
        return fail(Errc::invalid_argument, "{}: verity parameters that cannot be right", path);
    auto d = BALLAST_TRY(open_device(path));
    // Without the superblock: every parameter comes from the caller, the tree starts one
    // block after it.
    auto p = params(path.c_str(), v.data_blocks, v.hash_offset + kVerityBlock, *salt,
                    CRYPT_VERITY_NO_HEADER | CRYPT_VERITY_CHECK_HASH);
    if (int r =
            d->api->crypt_format(d->cd, CRYPT_VERITY, nullptr, nullptr, nullptr, nullptr, 0, &p);
        r < 0)
        return fail_errno(-r, path + ": set up verity");
    // No name: libcryptsetup checks every block in user space and activates nothing.
    if (int r = d->api->crypt_activate_by_volume_key(d->cd, nullptr, root->data(), root->size(), 0);
        r < 0) {
        // libcryptsetup: -EPERM for a block that does not match, -EFAULT for the root hash.
        if (r == -EPERM || r == -EFAULT)
            return fail(Errc::verification, "{}: the image does not match its verity root hash {}",
                        path, v.root_hash);
        return fail_errno(-r, path + ": verity check");
    }
    return {};
}

}  // namespace ballast::crypt
