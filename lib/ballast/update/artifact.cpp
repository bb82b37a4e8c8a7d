#include "ballast/update/artifact.hpp"

#include <nlohmann/json.hpp>

#include "ballast/core/json.hpp"

namespace ballast::update::oci {

std::string image_layer_type(const std::string& fstype) {
    return fmt::format("application/vnd.ballast.rootfs.{}.v1", fstype);
}

std::vector<Descriptor> bundle_layers(const Manifest& m, const Descriptor& manifest,
                                      const Descriptor& signature) {
    std::vector<Descriptor> out{manifest, signature};
    if (m.index)
        out.push_back({kIndexLayerType, "sha256:" + m.index->sha256, m.index->size, m.index->file});
    out.push_back(
        {image_layer_type(m.image.fstype), "sha256:" + m.image.sha256, m.image.size, m.image.file});
    return out;
}

std::string artifact_manifest(const Manifest& m, const std::vector<Descriptor>& layers) {
    nlohmann::json ls = nlohmann::json::array();
    for (const auto& l : layers)
        ls.push_back({{"mediaType", l.media_type},
                      {"digest", l.digest},
                      {"size", l.size},
                      {"annotations", {{kTitle, l.title}}}});
    const nlohmann::json j = {
        {"schemaVersion", 2},
        {"mediaType", kImageManifestType},
        {"artifactType", kArtifactType},
        {"config", {{"mediaType", kEmptyType}, {"digest", kEmptyDigest}, {"size", 2}}},
        {"layers", ls},
        {"annotations",
         {{"org.opencontainers.image.version", m.version},
          {"org.opencontainers.image.created", m.created},
          {"org.opencontainers.image.title", m.os_name},
          {"org.ballast.compatible", m.compatible}}},
    };
    return json_text(j);
}

}  // namespace ballast::update::oci
