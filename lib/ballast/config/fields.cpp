#include "ballast/config/fields.hpp"

#include "ballast/core/text.hpp"

namespace ballast::config {

std::string_view absolute_path(const std::string& s) {
    return is_absolute_path(s) ? "" : "expected an absolute path";
}

std::string_view optional_absolute_path(const std::string& s) {
    return s.empty() || is_absolute_path(s) ? "" : "expected an absolute path, or \"\" for none";
}

}  // namespace ballast::config
