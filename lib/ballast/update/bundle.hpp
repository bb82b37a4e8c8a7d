// Bundles on local storage: a folder holding manifest.json, manifest.json.sig, the image, its
// chunk index (rootfs.bcidx) and the release's UKI (uki.efi), or the same as members of an
// uncompressed tar (in that order: the index and UKI after the image, so that the first 64 KiB
// still hold what an https source reads first).
// The image is read where it lies (an offset in the tar), never copied.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "ballast/core/result.hpp"
#include "ballast/update/chunk_index.hpp"
#include "ballast/update/manifest.hpp"
#include "ballast/update/signature.hpp"
#include "ballast/update/uki_build.hpp"

namespace ballast::update {

inline constexpr const char* kManifestName = "manifest.json";
inline constexpr const char* kSignatureName = "manifest.json.sig";
inline constexpr const char* kUkiName = "uki.efi";

class Bundle {
  public:
    struct Member {
        std::string path;  // file holding the bytes
        uint64_t offset = 0;
        uint64_t size = 0;
    };
    [[nodiscard]] static Result<Bundle> open(const std::string& path);
    // A bundle whose members were located elsewhere (a remote tar, update/source.hpp).
    [[nodiscard]] static Bundle from_members(std::string path, bool tar,
                                             std::map<std::string, Member> members);

    [[nodiscard]] const std::string& path() const { return path_; }
    [[nodiscard]] bool is_tar() const { return tar_; }
    [[nodiscard]] std::optional<Member> member(const std::string& name) const;
    // Small members (manifest, signature) whole.
    [[nodiscard]] Result<std::optional<std::string>> read_small(const std::string& name) const;

  private:
    std::string path_;
    bool tar_ = false;
    std::map<std::string, Member> members_;
};

// Reads the 512-byte header at `off` into `h`; false when it lies beyond what can be read (a
// remote tar is parsed from its first bytes only: the members after the image are not needed).
using TarHeaderReader = std::function<Result<bool>(uint64_t off, char* h)>;
// The regular-file members of a ustar archive of `total` bytes; members' `path` is
// `member_path`. `where` names the archive in messages.
[[nodiscard]] Result<std::map<std::string, Bundle::Member>> parse_tar(
    const std::string& where, const std::string& member_path, uint64_t total,
    const TarHeaderReader& read);

// What checking a bundle established before any image byte is read.
struct Checked {
    Manifest manifest;
    std::string manifest_sha256;  // of the signed manifest's bytes: names the bundle in journals
    Signer signer;
    Bundle::Member image;
    // The chunk index the manifest names, checked against it (digest, size, structure, image
    // size). Read by check_bundle() only: an https source does not fetch it.
    std::optional<ChunkIndex> index;
    // The UKI the manifest names, checked (pinned digest, command line, PCR signature). Read by
    // check_bundle() only.
    std::optional<UkiInspection> uki;
};

// A UKI's command line must carry the words uki_root_hash_words() makes for `v`, each once:
// otherwise it would boot another image, or none. `what` names the UKI in the message.
[[nodiscard]] Status check_uki_cmdline(std::string_view cmdline, const crypt::Verity& v,
                                       std::string_view what);

// The manifest as the bundle holds it, parsed but not verified (inspecting, publishing).
[[nodiscard]] Result<Manifest> read_manifest(const Bundle& b);

// The checks of check_bundle() over parts found anywhere (a local bundle, a remote tar's first
// bytes): `member(name)` locates a member.
[[nodiscard]] Result<Checked> check_parts(
    const std::string& where, const std::optional<std::string>& manifest_text,
    const std::optional<std::string>& sig,
    const std::function<std::optional<Bundle::Member>(const std::string&)>& member,
    const std::string& keyring_pem);

// Signature (tampering, trust, dates, usage), then the manifest, then the image's presence and
// size, then the chunk index. Each failure has its own message (unsigned, untrusted, expired,
// tampered, truncated).
[[nodiscard]] Result<Checked> check_bundle(const Bundle& b, const std::string& keyring_pem);

// The slot image must be one our GRUB can read the kernel from (squashfs; GRUB 2.06 in Debian 12
// has no erofs). `where` names the bundle in the message.
[[nodiscard]] Status check_bootable(const Checked& c, const std::string& where);

// Streams the image and compares its SHA-256 with the manifest; with an index, also each chunk's
// SHA-256 with the index (the index must describe this image). `progress(done, total)`.
[[nodiscard]] Status verify_image(const Checked& c,
                                  const std::function<void(uint64_t, uint64_t)>& progress = {},
                                  const ChunkIndex* index = nullptr);

struct CreateOptions {
    std::string image, version, compatible, os_name = "ballast-os";
    std::string key, cert, chain;
    std::string out;  // a folder, or a .tar file
    // Without a chunk index the bundle installs on agents older than the index, which refuse
    // a manifest naming one; it cannot be fetched as a delta.
    bool no_index = false;
    // A dm-verity hash tree after the image (crypt/verity.hpp), its root hash in the manifest:
    // the slot then carries what the initramfs needs to check every block it reads.
    bool verity = false;
    // The release's UKI, built by build_uki() with "ballast.roothash=… ballast.verity_offset=…"
    // and then `cmdline` as its command line. Needs verity. The kernel, initrd and os-release
    // left empty in `build` are the image's own (/boot/vmlinuz, /boot/initrd.img, os-release);
    // `build.cmdline` and `build.output` are set here.
    struct Uki {
        UkiBuildOptions build;
        std::string cmdline;  // words after the root hash ("quiet console=ttyS0")
    };
    std::optional<Uki> uki;
};
// Checks the image (squashfs or erofs with /boot/vmlinuz and /boot/initrd.img), hashes it, builds
// the UKI if asked, writes and signs the manifest, and lays the bundle out. Returns the manifest.
[[nodiscard]] Result<Manifest> create_bundle(const CreateOptions& o);

// The keyring a node trusts: /etc/ballast/keyring.pem (operator override) if present, else
// the image's /usr/share/ballast/keyring.pem; both under `root`.
[[nodiscard]] std::string default_keyring(const std::string& root = "/");

}  // namespace ballast::update
