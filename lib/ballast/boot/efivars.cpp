#include "ballast/boot/efivars.hpp"

#include <filesystem>

#include "ballast/core/atomic_file.hpp"

namespace ballast::boot {
namespace {

constexpr size_t kMaxVariable = 1u << 20;

}  // namespace

Result<std::optional<std::string>> read_efi_variable(const std::string& efivars,
                                                     std::string_view name, std::string_view guid) {
    const auto path = std::filesystem::path(efivars) / fmt::format("{}-{}", name, guid);
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) return std::nullopt;
    std::string data = BALLAST_TRY(read_file(path, kMaxVariable));
    if (data.size() < 4) return fail(Errc::parse, "{}: shorter than its attributes", path.string());
    return data.substr(4);
}

std::optional<std::string> ascii_of_ucs2(std::string_view data) {
    std::string out;
    for (size_t i = 0; i + 1 < data.size(); i += 2) {
        const unsigned ch = uint8_t(data[i]) | unsigned(uint8_t(data[i + 1])) << 8;
        if (ch == 0) return out;
        if (ch >= 0x80) return std::nullopt;
        out += char(ch);
    }
    return out;
}

}  // namespace ballast::boot
