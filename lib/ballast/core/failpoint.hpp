// Test-only failure points: when $BALLAST_FAILPOINT names a point, the process stops dead there
// (SIGKILL to itself), as a power cut would stop it. Crash-safety tests use them to cut a
// multi-step disk change at every step; unset, a failure point costs one getenv().
#pragma once

#include <string_view>

namespace ballast {

void failpoint(std::string_view name);

}  // namespace ballast
