// The bundle manifest (manifest.json): what the image is and how to check it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "ballast/core/result.hpp"
#include "ballast/crypt/verity.hpp"

namespace ballast::update {

inline constexpr int kManifestFormat = 1;
// Two UKIs must fit the ESP (256 MiB on new installs) with room to spare.
inline constexpr uint64_t kMaxUkiSize = uint64_t(96) << 20;

struct Manifest {
    int format = kManifestFormat;
    std::string os_name;     // "ballast-os"
    std::string version;     // "1.2.0"
    std::string compatible;  // must equal the node's compatible string
    struct Image {
        std::string file;  // member name in the bundle ("rootfs.img")
        uint64_t size = 0;
        std::string sha256;  // lower-case hex
        std::string fstype;  // "squashfs" or "erofs"
    } image;
    // A bundle member beside the image, pinned by its digest.
    struct Member {
        std::string file;  // member name ("rootfs.bcidx")
        uint64_t size = 0;
        std::string sha256;
    };
    using Index = Member;
    // The image's chunk index (update/chunk_index.hpp), for delta downloads. Optional: bundles
    // made with `--no-index` (for agents older than the index) have none.
    std::optional<Index> index;
    // The image's dm-verity hash tree (crypt/verity.hpp), which then makes up the image's tail:
    // image.size is hash_offset plus the hash area. Optional: bundles made without --verity
    // have none, and agents older than it refuse a manifest naming one.
    std::optional<crypt::Verity> verity;
    // The release's signed Unified Kernel Image ("uki.efi"), for the systemd-boot backend: its
    // command line names the verity root hash above (uki_root_hash_words()), so a UKI requires
    // verity. Optional; agents older than it refuse a manifest naming one.
    std::optional<Member> uki;
    std::string created;  // ISO 8601 UTC

    [[nodiscard]] nlohmann::json to_json() const;
};

// Strict parsing: every field present and well-formed, nothing unknown (a signed manifest is
// machine-made; anything odd is an attack or a bug).
[[nodiscard]] Result<Manifest> parse_manifest(std::string_view text);
[[nodiscard]] std::string serialize_manifest(const Manifest& m);

// The kernel command line words that tie a UKI to its slot image: "ballast.roothash=<hex>
// ballast.verity_offset=<bytes>". Ballast's own names, so that systemd's verity generator
// (roothash=) never races the initramfs for the device.
[[nodiscard]] std::string uki_root_hash_words(const crypt::Verity& v);
// Whether a command line word's key says where the root image or its hash is (Ballast's words,
// systemd's roothash=, usrhash=, systemd.verity*), as systemd reads keys: an "rd." prefix
// stripped, '-' and '_' alike.
[[nodiscard]] bool names_root_hash(std::string_view key);

}  // namespace ballast::update
