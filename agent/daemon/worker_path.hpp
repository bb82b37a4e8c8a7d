// Where ballast-worker is: $BALLAST_WORKER, else next to this executable (the build tree),
// else the installed libexec folder.
#pragma once

#include <string>

namespace ballast::agent {

[[nodiscard]] std::string worker_path();

}  // namespace ballast::agent
