// libFuzzer target: bytes as a chunk index (rootfs.bcidx, update/chunk_index.hpp). The index comes
// from a registry or a bundle and is parsed only after its digest matched the signed manifest, but
// the parser must stand on its own: any crash, sanitizer report, or an accepted index that breaks
// the invariants the delta planner relies on is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "ballast/update/chunk_index.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace ballast::update;
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);
    auto idx = parse_index(bytes, "fuzz.bcidx");
    if (!idx) return 0;
    uint64_t offset = 0;
    for (size_t i = 0; i < idx->chunks.size(); ++i) {
        const auto& c = idx->chunks[i];
        const bool last = i + 1 == idx->chunks.size();
        if (c.offset != offset || c.length == 0 || c.length > idx->params.max ||
            (!last && c.length < idx->params.min))
            std::abort();
        offset += c.length;
    }
    if (offset != idx->image_size || serialize_index(*idx) != bytes) std::abort();
    return 0;
}
