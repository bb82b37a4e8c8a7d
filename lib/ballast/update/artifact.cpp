#include "ballast/update/artifact.hpp"

#include <nlohmann/json.hpp>

#include "ballast/core/json.hpp"
#include "ballast/core/text.hpp"

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
    if (m.uki) out.push_back({kUkiLayerType, "sha256:" + m.uki->sha256, m.uki->size, m.uki->file});
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

Result<std::vector<Descriptor>> parse_artifact_manifest(std::string_view bytes) {
    if (bytes.size() > (4u << 20))
        return fail(Errc::parse, "the OCI manifest is {} bytes, more than 4 MiB", bytes.size());
    const auto j = nlohmann::json::parse(bytes, nullptr, false);
    if (j.is_discarded() || !j.is_object())
        return fail(Errc::parse, "the OCI manifest is not a JSON object");
    if (json_field<int64_t>(j, "schemaVersion", 0) != 2)
        return fail(Errc::parse, "the OCI manifest's schemaVersion is not 2");
    if (const auto mt = json_field<std::string>(j, "mediaType", kImageManifestType);
        mt != kImageManifestType)
        return fail(Errc::unsupported, "the registry sent a {}, not an OCI image manifest", mt);
    if (const auto at = json_field<std::string>(j, "artifactType", ""); at != kArtifactType)
        return fail(Errc::unsupported, "not a Ballast OS artifact (artifactType '{}', not {})", at,
                    kArtifactType);
    if (!j.contains("layers") || !j["layers"].is_array() || j["layers"].size() > 64)
        return fail(Errc::parse, "the OCI manifest's layers must be an array of at most 64");
    std::vector<Descriptor> out;
    for (const auto& l : j["layers"]) {
        Descriptor d;
        d.media_type = json_field<std::string>(l, "mediaType", "");
        d.digest = json_field<std::string>(l, "digest", "");
        d.size = json_field<uint64_t>(l, "size", 0);
        if (l.is_object() && l.contains("annotations"))
            d.title = json_field<std::string>(l["annotations"], kTitle, "");
        const size_t i = out.size();
        if (d.media_type.empty() || d.title.empty())
            return fail(Errc::parse, "layer {} of the OCI manifest has no mediaType or no title",
                        i);
        if (d.digest.size() != 71 || d.digest.rfind("sha256:", 0) != 0 ||
            !is_sha256_hex(d.digest.substr(7)))
            return fail(Errc::parse, "layer {} ({}) has no sha256 digest", i, d.title);
        for (const auto& o : out)
            if (o.title == d.title)
                return fail(Errc::parse, "two layers of the OCI manifest are titled {}", d.title);
        out.push_back(std::move(d));
    }
    return out;
}

}  // namespace ballast::update::oci
