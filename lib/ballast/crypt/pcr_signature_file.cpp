#include "ballast/crypt/pcr_signature_file.hpp"

#include <array>
#include <filesystem>

#include "ballast/core/atomic_file.hpp"

namespace ballast::crypt {
namespace {

constexpr size_t kMaxFile = 1u << 20;
constexpr std::array<const char*, 5> kPlaces{
    "/etc/systemd", "/run/systemd", "/usr/local/lib/systemd", "/usr/lib/systemd", "/.extra"};

Result<std::vector<PcrSignature>> load(const std::string& path) {
    std::string text = BALLAST_TRY(read_file(path, kMaxFile));
    return parse_pcr_signatures(text, path);
}

}  // namespace

Result<std::vector<PcrSignature>> load_pcr_signatures(const std::string& path) {
    if (!path.empty()) return load(path);
    for (const char* dir : kPlaces) {
        std::string candidate = std::string(dir) + "/" + kPcrSignatureName;
        std::error_code ec;
        if (std::filesystem::exists(candidate, ec)) return load(candidate);
    }
    return std::vector<PcrSignature>{};
}

}  // namespace ballast::crypt
