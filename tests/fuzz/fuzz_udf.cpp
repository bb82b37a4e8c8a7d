// libFuzzer target: bytes as a UDF volume (datasource/udf.hpp), the provisioning DVD a
// platform (or anyone who can attach a disc) hands the node. A volume is mostly zeros, and its
// anchor sits 256 blocks in, so the input is a sparse 1 MiB volume: records of a 4-byte
// little-endian offset, a 2-byte length and that many bytes; everything else reads as zeros.
// The seeds (tests/fuzz/corpus/udf/) are real volumes so written (tests/fuzz/sparse_volume.py).
// Any crash, sanitizer report or hang, or a file larger than asked for, is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "ballast/core/bytes.hpp"
#include "ballast/datasource/udf.hpp"

using namespace ballast;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    constexpr size_t kVolume = 1 << 20;
    std::string volume(kVolume, '\0');
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    for (size_t at = 0; at + 6 <= in.size();) {
        const size_t off = le32(in, at) % kVolume, len = le16(in, at + 4);
        at += 6;
        const size_t n = std::min({len, in.size() - at, kVolume - off});
        std::memcpy(volume.data() + off, in.data() + at, n);
        at += n;
    }
    const datasource::ReadAt read = [&](uint64_t off, size_t len) -> Result<std::string> {
        if (off > kVolume || len > kVolume - off) return fail(Errc::io, "past the end");
        return volume.substr(size_t(off), len);
    };
    constexpr size_t kMax = 64 << 10;
    for (const char* path : {"ovf-env.xml", "sub/dir/nested.txt"}) {
        auto r = datasource::udf_read_file(read, kVolume, path, kMax);
        if (r && *r && (*r)->size() > kMax) std::abort();
    }
    return 0;
}
