// Opening the encrypted persistent partition at boot: the TPM2 tokens first; when they cannot
// (no TPM, changed PCRs, lockout, wrong PIN) the reason goes to the console and the recovery key
// is asked for there. Never a silent hang.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "ballast/config/agent_settings.hpp"
#include "ballast/core/result.hpp"

namespace ballast::ops {

struct UnlockRequest {
    std::string device;       // LUKS2 partition (or image file)
    std::string name;         // /dev/mapper name; empty: check the key only, map nothing
    std::string tpm2_device;  // TCTI; empty: agent.yaml tpm.device, else /dev/tpmrm0
    // tpm2-pcr-signature.json for signed tokens; empty: agent.yaml tpm.signature, else
    // systemd's places and /.extra (crypt/pcr_signature_file.hpp).
    std::string tpm2_signature;
};

struct UnlockReport {
    std::string device, name;
    std::string method;  // "tpm2", "recovery-key"
    int keyslot = -1;
    uint64_t tpm_commands = 0;
    int64_t ms = 0;
    [[nodiscard]] nlohmann::json to_json() const;
};

[[nodiscard]] Result<UnlockReport> unlock(const config::AgentSettings& settings,
                                          const UnlockRequest& req);

}  // namespace ballast::ops
