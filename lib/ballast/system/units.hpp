// systemd units on a node root without systemd running: the [Install] logic of
// `systemctl --root=DIR enable|disable|mask`, producing the same symlinks (tested against it).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "ballast/core/result.hpp"
#include "ballast/core/root.hpp"

namespace ballast::units {

// The unit search path of Debian 12's systemd, in order.
[[nodiscard]] const std::vector<std::string>& search_path();

struct UnitFile {
    std::string name;  // as asked for ("getty@tty1.service")
    std::string path;  // node path of the file found ("/lib/systemd/system/getty@.service")
    std::vector<std::string> wanted_by, required_by, alias, also;
    std::string default_instance;
};

// Finds and parses a unit ("name", or "name@instance" through its template).
[[nodiscard]] Result<UnitFile> find_unit(const RootPrefix& root, const std::string& name);

// Each returns the symlinks it created or removed (node paths); empty when nothing changed.
[[nodiscard]] Result<std::vector<std::string>> enable(const RootPrefix& root,
                                                      const std::string& name);
[[nodiscard]] Result<std::vector<std::string>> disable(const RootPrefix& root,
                                                       const std::string& name);
[[nodiscard]] Result<std::vector<std::string>> mask(const RootPrefix& root,
                                                    const std::string& name);

// A unit name with ".service" added when it has no unit suffix.
[[nodiscard]] std::string normalize_name(const std::string& name);

}  // namespace ballast::units
