// Where the signed PCR policies of the running boot are: systemd-stub hands the UKI's .pcrsig
// to the initrd as /.extra/tpm2-pcr-signature.json, and systemd-tmpfiles copies it to
// /run/systemd/; systemd-cryptsetup 252 looks in /etc/systemd, /run/systemd,
// /usr/local/lib/systemd and /usr/lib/systemd, in that order.
#pragma once

#include <string>
#include <vector>

#include "ballast/core/result.hpp"
#include "ballast/crypt/pcr_signature.hpp"

namespace ballast::crypt {

inline constexpr const char* kPcrSignatureName = "tpm2-pcr-signature.json";

// `path` when given (it must exist and parse); else the first file found in systemd's places,
// then /.extra; none anywhere is an empty list (tokens without a signed policy need none).
// A file that exists but does not parse is an error naming it.
[[nodiscard]] Result<std::vector<PcrSignature>> load_pcr_signatures(const std::string& path);

}  // namespace ballast::crypt
