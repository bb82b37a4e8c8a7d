// TPM2 sealing of the encrypted partitions' keys (agent.yaml `tpm:`). Owned here, composed by
// config::AgentSettings, so crypt never includes config.
#pragma once

#include <chrono>
#include <string>

namespace ballast::crypt {

struct TpmSettings {
    std::string device;      // TCTI (device:/dev/tpmrm0, swtpm:...); empty: /dev/tpmrm0
    std::string pcrs = "7";  // bound PCRs, "7" or "7,14"
    std::string pcr_bank = "sha256";
    // A signed PCR policy for new tokens (systemd-cryptenroll --tpm2-public-key): the PEM
    // public key whose signatures over `public_key_pcrs` the TPM will accept. Empty: none.
    std::string public_key;
    std::string public_key_pcrs = "11";
    // The signatures of this boot (tpm2-pcr-signature.json); empty: systemd's places, /.extra.
    std::string signature;
    std::string recovery_key_command;  // gets a new recovery key on stdin (sh -c, as written)
    // How long boot waits for someone to type the recovery key when the TPM does not open the
    // partition (0: for ever). An edge node nobody visits must not wait for ever: it then boots
    // for recovery (ops/mount.hpp), reachable over SSH.
    std::chrono::milliseconds recovery_key_timeout{std::chrono::minutes(5)};
    // The LUKS2 partition upgrades keep TPM2 tokens for (absent or not LUKS2: none).
    std::string encrypted_device = "/dev/disk/by-partlabel/BALLAST_PERSISTENT";
};

}  // namespace ballast::crypt
