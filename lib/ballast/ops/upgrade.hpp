// An upgrade of this node (update/upgrade.hpp does the steps of the write order; this assembles
// them from the node: its disk's boot control and slots, its settings, and the TPM2 keys for the
// new slot's boot when persistent storage is encrypted).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "ballast/ops/node.hpp"
#include "ballast/update/upgrade.hpp"

namespace ballast::ops {

using update::UpgradeRequest;

// A source the upgrade job can be given: an absolute path (bundle folder or .tar) or a URL.
[[nodiscard]] Status check_source(const std::string& source);

[[nodiscard]] Result<update::UpgradeResult> upgrade(const Node& node,
                                                    const update::UpgradeRequest& req,
                                                    const update::UpgradeProgress& progress = {});

// The upgrade job's report as the daemon reads it: what it did, or why it failed.
struct UpgradeReport {
    bool ok = false;
    std::string error;
    update::UpgradeResult result;
    [[nodiscard]] static UpgradeReport from_json(const nlohmann::json& report);
    // The one-line message for LastError, the log and JobFinished.
    [[nodiscard]] std::string message() const;
};

}  // namespace ballast::ops
