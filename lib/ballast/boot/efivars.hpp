// EFI variables as Linux's efivarfs shows them: one file per variable, NAME-GUID, its data after
// 4 bytes of attributes.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "ballast/core/result.hpp"

namespace ballast::boot {

inline constexpr const char* kEfivars = "/sys/firmware/efi/efivars";
// systemd-boot's vendor GUID (the Boot Loader Interface).
inline constexpr std::string_view kLoaderGuid = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";

// The variable's data; nullopt when it is not there. At most 1 MiB.
[[nodiscard]] Result<std::optional<std::string>> read_efi_variable(const std::string& efivars,
                                                                   std::string_view name,
                                                                   std::string_view guid);
// A UCS-2 (UTF-16LE) string variable, up to its NUL; nullopt when it holds anything but ASCII.
[[nodiscard]] std::optional<std::string> ascii_of_ucs2(std::string_view data);

}  // namespace ballast::boot
