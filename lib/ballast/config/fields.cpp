#include "ballast/config/fields.hpp"

#include "ballast/core/text.hpp"

namespace ballast::config {

std::string_view absolute_path(const std::string& s) {
    return is_absolute_path(s) ? "" : "expected an absolute path";
}

}  // namespace ballast::config
