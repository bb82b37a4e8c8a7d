#include "ballast/crypt/encrypted_fs.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <vector>

#include "ballast/core/fd.hpp"
#include "ballast/core/openssl.hpp"
#include "ballast/disk/mkfs.hpp"
#include "ballast/disk/range.hpp"

namespace ballast::crypt {
namespace {

constexpr size_t kSector = 512;
constexpr size_t kChunk = 1u << 20;

Status make_sparse(const std::string& path, uint64_t size) {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd) return fail_errno(errno, path);
    if (::ftruncate(fd.get(), off_t(size)) < 0) return fail_errno(errno, path);
    return {};
}

// Copies [from, from + n) of `src` to `dst`, encrypting on the way when `vk` is given.
Status copy_range(int src, uint64_t from, uint64_t n, const disk::ByteRange& dst, uint64_t to,
                  const SecretBytes* vk, std::vector<uint8_t>& buf) {
    while (n > 0) {
        size_t len = size_t(std::min<uint64_t>(n, buf.size()));
        ssize_t r = ::pread(src, buf.data(), len, off_t(from));
        if (r < 0) return fail_errno(errno, "read");
        if (size_t(r) != len) return fail(Errc::io, "short read at {}", from);
        if (vk) BALLAST_TRY(xts_plain64(*vk, from / kSector, buf.data(), len));
        BALLAST_TRY(dst.write_at(buf.data(), len, to));
        from += len;
        to += len;
        n -= len;
    }
    return {};
}

}  // namespace

Status xts_plain64(const SecretBytes& vk, uint64_t first_sector, uint8_t* data, size_t n,
                   bool decrypt) {
    if (n % kSector) return fail(Errc::invalid_argument, "{} bytes is not whole sectors", n);
    const auto* a = BALLAST_TRY(ossl::api());
    std::unique_ptr<EVP_CIPHER_CTX, decltype(a->EVP_CIPHER_CTX_free)> ctx(a->EVP_CIPHER_CTX_new(),
                                                                          a->EVP_CIPHER_CTX_free);
    if (!ctx) return fail(Errc::failed, "AES-XTS: {}", ossl::errors(*a));
    for (size_t off = 0; off < n; off += kSector) {
        // plain64: the sector number, little-endian, zero-padded to the 16-byte tweak.
        uint8_t iv[16] = {};
        uint64_t sector = first_sector + off / kSector;
        for (int i = 0; i < 8; ++i)
            iv[i] = uint8_t(sector >> (8 * i));
        int len = 0;
        int ok =
            decrypt
                ? a->EVP_DecryptInit_ex(ctx.get(), a->EVP_aes_256_xts(), nullptr, vk.data(), iv) &&
                      a->EVP_DecryptUpdate(ctx.get(), data + off, &len, data + off, int(kSector))
                : a->EVP_EncryptInit_ex(ctx.get(), a->EVP_aes_256_xts(), nullptr, vk.data(), iv) &&
                      a->EVP_EncryptUpdate(ctx.get(), data + off, &len, data + off, int(kSector));
        if (!ok || len != int(kSector)) return fail(Errc::failed, "AES-XTS: {}", ossl::errors(*a));
    }
    return {};
}

Result<EncryptedFs> make_encrypted_ext4(const std::string& device, uint64_t offset, uint64_t size,
                                        const std::string& label, Tpm2& tpm, PcrBank bank,
                                        PcrMask pcrs, const std::string& tmpdir) {
    // aes-xts-plain64 with two AES-256 keys.
    SecretBytes vk = BALLAST_TRY(random_secret(64));
    const std::string header = tmpdir + "/luks-header.img", plain = tmpdir + "/plain.img";
    BALLAST_TRY(make_sparse(header, size));
    EncryptedFs out;
    uint64_t data_offset = 0;
    {
        Luks luks = BALLAST_TRY(Luks::format(header, vk, label));
        out.recovery = BALLAST_TRY(enroll_recovery_key(luks, vk));
        out.tpm = BALLAST_TRY(enroll_tpm2(luks, vk, tpm, bank, pcrs, std::nullopt));
        out.uuid = luks.uuid();
        data_offset = luks.data_offset();
    }
    if (data_offset == 0 || data_offset >= size)
        return fail(Errc::invalid_argument, "{} bytes is too small for a LUKS2 partition", size);
    const uint64_t data_size = (size - data_offset) / kSector * kSector;
    BALLAST_TRY(make_sparse(plain, data_size));
    BALLAST_TRY(disk::make_ext4(plain, 0, data_size, label, "", true));

    auto dst =
        BALLAST_TRY(disk::ByteRange::open(device, offset, size, disk::ByteRange::Mode::write));
    std::vector<uint8_t> buf(kChunk);
    UniqueFd h(::open(header.c_str(), O_RDONLY | O_CLOEXEC));
    if (!h) return fail_errno(errno, header);
    BALLAST_TRY_CTX(copy_range(h.get(), 0, data_offset, dst, 0, nullptr, buf), "LUKS2 header");
    UniqueFd p(::open(plain.c_str(), O_RDONLY | O_CLOEXEC));
    if (!p) return fail_errno(errno, plain);
    // Only what mke2fs wrote: the rest is free space, whatever it decrypts to.
    off_t pos = 0;
    while (true) {
        off_t data = ::lseek(p.get(), pos, SEEK_DATA);
        if (data < 0) {
            if (errno == ENXIO) break;
            return fail_errno(errno, plain);
        }
        off_t hole = ::lseek(p.get(), data, SEEK_HOLE);
        if (hole < 0) return fail_errno(errno, plain);
        uint64_t from = uint64_t(data) / kSector * kSector;
        uint64_t to =
            std::min<uint64_t>((uint64_t(hole) + kSector - 1) / kSector * kSector, data_size);
        BALLAST_TRY_CTX(copy_range(p.get(), from, to - from, dst, data_offset + from, &vk, buf),
                        "encrypt the filesystem");
        pos = hole;
    }
    std::fill(buf.begin(), buf.end(), 0);
    BALLAST_TRY(dst.sync());
    return out;
}

}  // namespace ballast::crypt
