// libFuzzer target: bytes as the OCI manifest of a Ballast artifact (update/artifact.hpp). The
// manifest comes from a registry before anything is trusted (its digest is checked first only
// when a digest was asked for): any crash, sanitizer report, or an accepted manifest whose layers
// break what the source code relies on (a sha256 digest, a title, titles unique) is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string_view>

#include "ballast/update/artifact.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);
    auto layers = ballast::update::oci::parse_artifact_manifest(bytes);
    if (!layers) return 0;
    std::set<std::string> titles;
    for (const auto& l : *layers) {
        if (l.digest.size() != 71 || l.digest.rfind("sha256:", 0) != 0 || l.title.empty() ||
            l.media_type.empty() || !titles.insert(l.title).second)
            std::abort();
    }
    return 0;
}
