// A bundle as an OCI artifact (update/artifact.hpp), written as an OCI image layout (image-spec
// "OCI Image Layout": oci-layout, index.json, blobs/sha256/) for tools that publish layouts
// (`skopeo copy oci:DIR:TAG docker://REGISTRY/REPO:TAG`), or pushed to a registry.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ballast/core/result.hpp"
#include "ballast/update/artifact.hpp"
#include "ballast/update/bundle.hpp"
#include "ballast/update/registry.hpp"

namespace ballast::update::oci {

// What the bundle becomes in a registry: its members as layers, and the artifact manifest.
struct BundleArtifact {
    Manifest manifest;
    std::string manifest_text, signature;
    std::vector<Descriptor> layers;
    std::vector<std::optional<Bundle::Member>> members;  // per layer; none for manifest and sig
    std::string oci_manifest;                            // bytes
    std::string oci_digest;                              // "sha256:<hex>"
};
// Reads and parses the bundle's manifest and signature (not verified: the node does that) and
// finds every member the manifest names, with the size it says.
[[nodiscard]] Result<BundleArtifact> bundle_artifact(const Bundle& b);

struct ExportResult {
    std::string manifest_digest;  // "sha256:<hex>" of the artifact manifest
    uint64_t manifest_size = 0;
    uint64_t bytes = 0;  // of all blobs
};

// Writes the bundle's members as blobs (hard links where the filesystem allows, else copies),
// the artifact manifest, and index.json naming it `tag`. Every blob is hashed as it is
// written: a member that does not match the signed manifest is refused, and nothing names a
// blob before it is whole. A layout that exists already keeps its other tags; an entry with
// the same tag is replaced.
[[nodiscard]] Result<ExportResult> export_layout(const Bundle& b, const std::string& dir,
                                                 const std::string& tag);

struct PushProgress {
    std::string blob;  // the member's name, or "config"
    uint64_t done = 0, total = 0;
    bool already_there = false;
};
struct PushResult {
    std::string digest;                             // of the artifact manifest
    uint64_t total = 0, uploaded = 0, skipped = 0;  // bytes of blobs
};
// Uploads the blobs the registry lacks (blob upload in pieces, resumed where the registry says
// it stands), then the manifest under the client's tag. Blobs are checked by the registry
// against their digests, the signed manifest's, on closing each upload.
[[nodiscard]] Result<PushResult> push_bundle(
    const Bundle& b, Client& client, const std::function<void(const PushProgress&)>& progress = {});

}  // namespace ballast::update::oci
