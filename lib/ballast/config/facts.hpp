// Node facts for templates: {{ .MachineID }}, {{ .Hostname }}, {{ .UUID }}, {{ .Random }} and
// {{ .Values.* }} (named like Kairos's sysinfo: node, os, kernel, product, board, cpu, memory,
// network, plus tpm). Gathered once per load.
#pragma once

#include <nlohmann/json.hpp>

#include "ballast/core/result.hpp"
#include "ballast/core/root.hpp"

namespace ballast::config {

// Reads the facts: files under the node root (/etc/machine-id, /etc/os-release, /etc/hostname
// when the root is not the running system) and the running machine (/sys, /proc, uname).
[[nodiscard]] Result<nlohmann::json> gather_facts(const RootPrefix& root);

}  // namespace ballast::config
