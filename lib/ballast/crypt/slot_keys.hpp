// Keys across an A/B upgrade: before a new slot is activated, a TPM2 token must exist that will
// open the encrypted partition once the new slot has booted; after the new slot commits, tokens
// sealed to measurements that no longer occur are removed. Ballast boots every slot through the
// same shim and GRUB on the ESP, so PCR 7 (Secure Boot state) and 14 (MOK) read the same in the
// next boot as now: the prediction for them is the current values. Other PCRs (4, 8, 9: kernel,
// initrd, grub.cfg) change with the slot and cannot be predicted without an event log: such a
// policy stops the upgrade before activation, with the reason.
#pragma once

#include <optional>
#include <string>

#include "ballast/core/result.hpp"
#include "ballast/crypt/pcr.hpp"
#include "ballast/crypt/settings.hpp"

namespace ballast::crypt {

struct KeyPolicy {
    std::string device;  // the LUKS2 partition (or image file)
    std::string tcti;
    PcrBank bank = PcrBank::sha256;
    PcrMask pcrs = PcrMask{1} << 7;
};

// From agent.yaml; nullopt when the node has no LUKS2 partition at tpm.encrypted_device.
[[nodiscard]] Result<std::optional<KeyPolicy>> key_policy(const TpmSettings& tpm);

// Before activation: a token the next boot's PCRs satisfy, enrolled if missing (the volume key
// comes from a token the current PCRs satisfy). Returns what was done, for the log.
[[nodiscard]] Result<std::string> prepare_next_boot(const KeyPolicy& p);

// After a commit: removes PIN-less TPM2 keyslots with the same PCRs and bank whose policy the
// current PCRs no longer satisfy, once one that does exists. Returns what was done.
[[nodiscard]] Result<std::string> drop_stale_tokens(const KeyPolicy& p);

}  // namespace ballast::crypt
