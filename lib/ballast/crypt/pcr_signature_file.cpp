#include "ballast/crypt/pcr_signature_file.hpp"

#include <array>
#include <filesystem>

#include "ballast/core/atomic_file.hpp"

namespace ballast::crypt {
namespace {

constexpr std::array<const char*, 4> kPlaces{"/etc/systemd", "/run/systemd",
                                             "/usr/local/lib/systemd", "/usr/lib/systemd"};
// Where systemd-stub leaves the UKI's files; only the initrd has it.
constexpr const char* kStubExtra = "/.extra";

Result<PcrSignatureFile> load(const std::string& path) {
    std::string text = BALLAST_TRY(read_file(path, kMaxPcrSignatureFile));
    auto entries = BALLAST_TRY(parse_pcr_signatures(text, path));
    return PcrSignatureFile{path, std::move(entries)};
}

}  // namespace

Result<PcrSignatureFile> load_pcr_signatures(const std::string& path) {
    if (!path.empty()) return load(path);
    std::vector<std::string> dirs(kPlaces.begin(), kPlaces.end());
    std::error_code ec;
    if (std::filesystem::exists("/etc/initrd-release", ec)) dirs.emplace_back(kStubExtra);
    for (const std::string& dir : dirs) {
        std::string candidate = dir + "/" + kPcrSignatureName;
        if (std::filesystem::exists(candidate, ec)) return load(candidate);
    }
    return PcrSignatureFile{};
}

}  // namespace ballast::crypt
