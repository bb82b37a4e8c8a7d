// Copying a byte range between files in large blocks, with an optional look at every block
// (to hash what is copied in the same pass).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include "ballast/core/result.hpp"

namespace ballast {

// Bytes [offset, offset+size) of `in` appended to `out` at its file position. `what` names the
// copy in errors; a source shorter than `size` is an error.
[[nodiscard]] Status copy_bytes(int in, uint64_t offset, uint64_t size, int out,
                                const std::string& what,
                                const std::function<void(std::span<const uint8_t>)>& tap = {});

}  // namespace ballast
