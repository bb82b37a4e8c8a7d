#include "ballast/stages/names.hpp"

namespace ballast::stages {

Status check_stage_name(const std::string& stage) {
    if (stage.empty() || stage.size() > 64 ||
        stage.find_first_not_of(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
            std::string::npos ||
        stage.front() == '.')
        return fail(Errc::invalid_argument,
                    "invalid stage name '{}' (letters, digits, '.', '_', '-')", stage);
    return {};
}

}  // namespace ballast::stages
