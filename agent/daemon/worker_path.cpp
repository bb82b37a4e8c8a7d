#include "worker_path.hpp"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>

namespace ballast::agent {

std::string worker_path() {
    if (const char* env = std::getenv("BALLAST_WORKER"); env && *env) return env;
    std::error_code ec;
    auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        auto sibling = self.parent_path() / "ballast-worker";
        if (::access(sibling.c_str(), X_OK) == 0) return sibling;
    }
    return std::string(BALLAST_LIBEXECDIR) + "/ballast-worker";
}

}  // namespace ballast::agent
