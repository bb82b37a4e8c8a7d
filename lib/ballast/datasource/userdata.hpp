// User-data as clouds deliver it, to what Ballast runs: cloud-config documents and scripts.
// Accepts what cloud-init accepts on the wire: plain text, gzip (by its magic bytes), MIME
// multipart (text/cloud-config, text/x-shellscript, parts base64- or gzip-encoded, nested
// multipart). Parts Ballast does not act on (boothooks, #include URLs, jinja templates,
// cloud-config archives, parts it cannot type) are reported, never run half-understood.
// Bounded: input and decoded sizes (every byte gzip gives back), parts over all levels, nesting
// depth.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "ballast/core/result.hpp"

namespace ballast::datasource {

struct UserData {
    std::vector<std::string> configs;  // each a document with a cloud-config header line
    std::vector<std::string> scripts;  // each starting with "#!"
    std::vector<std::string> ignored;  // "part 2 (text/cloud-boothook): not run by Ballast"
    [[nodiscard]] bool empty() const { return configs.empty() && scripts.empty(); }
};

inline constexpr size_t kMaxUserData = 16u << 20;  // decoded, over all parts
inline constexpr size_t kMaxParts = 64;

// `raw` as the metadata service returned it (a platform's own base64 layer already removed).
// An error names what is wrong ("user-data: part 3: bad base64").
[[nodiscard]] Result<UserData> decode_user_data(std::string_view raw);

}  // namespace ballast::datasource
