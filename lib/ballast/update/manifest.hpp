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
    // The image's chunk index (update/chunk_index.hpp), for delta downloads. Optional: bundles
    // made with `--no-index` (for agents older than the index) have none.
    struct Index {
        std::string file;  // member name ("rootfs.bcidx")
        uint64_t size = 0;
        std::string sha256;
    };
    std::optional<Index> index;
    // The image's dm-verity hash tree (crypt/verity.hpp), which then makes up the image's tail:
    // image.size is hash_offset plus the hash area. Optional: bundles made without --verity
    // have none, and agents older than it refuse a manifest naming one.
    std::optional<crypt::Verity> verity;
    std::string created;  // ISO 8601 UTC

    [[nodiscard]] nlohmann::json to_json() const;
};

// Strict parsing: every field present and well-formed, nothing unknown (a signed manifest is
// machine-made; anything odd is an attack or a bug).
[[nodiscard]] Result<Manifest> parse_manifest(std::string_view text);
[[nodiscard]] std::string serialize_manifest(const Manifest& m);

}  // namespace ballast::update
