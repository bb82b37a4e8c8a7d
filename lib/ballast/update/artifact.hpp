// A bundle as an OCI artifact (image-spec 1.1): one image manifest whose artifactType is
// Ballast's, with the empty config descriptor, and one layer per bundle member, each with its own
// media type and its file name as org.opencontainers.image.title. Pulling the layers by title
// gives back the bundle folder. The bundle's CMS signature stays the root of trust: the registry
// is only a transport, and the OCI digests are transport checks (docs/bundles.md).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ballast/core/result.hpp"
#include "ballast/update/manifest.hpp"

namespace ballast::update::oci {

inline constexpr const char* kArtifactType = "application/vnd.ballast.os.v1";
inline constexpr const char* kImageManifestType = "application/vnd.oci.image.manifest.v1+json";
inline constexpr const char* kImageIndexType = "application/vnd.oci.image.index.v1+json";
inline constexpr const char* kEmptyType = "application/vnd.oci.empty.v1+json";
inline constexpr const char* kManifestLayerType = "application/vnd.ballast.manifest.v1+json";
inline constexpr const char* kSignatureLayerType = "application/vnd.ballast.manifest.sig.v1+cms";
inline constexpr const char* kIndexLayerType = "application/vnd.ballast.chunk-index.v1";
inline constexpr const char* kUkiLayerType = "application/vnd.ballast.uki.v1+efi";
inline constexpr const char* kTitle = "org.opencontainers.image.title";
inline constexpr const char* kRefName = "org.opencontainers.image.ref.name";
// The empty JSON object "{}", the config of every artifact.
inline constexpr std::string_view kEmptyBlob = "{}";
inline constexpr const char* kEmptyDigest =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

// "application/vnd.ballast.rootfs.squashfs.v1" (or erofs).
[[nodiscard]] std::string image_layer_type(const std::string& fstype);

struct Descriptor {
    std::string media_type;
    std::string digest;  // "sha256:<hex>"
    uint64_t size = 0;
    std::string title;  // the bundle member's file name
};

// The layers of a bundle in their fixed order (manifest, signature, index if any, image, UKI if
// any), from
// the signed manifest's digests and the sizes and digests of the manifest and signature bytes.
[[nodiscard]] std::vector<Descriptor> bundle_layers(const Manifest& m, const Descriptor& manifest,
                                                    const Descriptor& signature);

// The OCI image manifest's bytes (compact JSON, keys sorted: the same input gives the same
// digest). Annotations carry the version and creation time for people browsing the registry.
[[nodiscard]] std::string artifact_manifest(const Manifest& m,
                                            const std::vector<Descriptor>& layers);

// The layers of an artifact manifest a registry sent, checked: schemaVersion 2, the image
// manifest media type, Ballast's artifactType, and per layer a media type, a sha256 digest, a
// size and a title, titles unique. At most 4 MiB (distribution's own limit) and 64 layers.
[[nodiscard]] Result<std::vector<Descriptor>> parse_artifact_manifest(std::string_view bytes);

}  // namespace ballast::update::oci
