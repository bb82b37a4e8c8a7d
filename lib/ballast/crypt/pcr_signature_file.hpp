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

struct PcrSignatureFile {
    std::string path;  // where they came from; empty: no file anywhere
    std::vector<PcrSignature> entries;
};

// `path` when given (it must exist and parse); else the first file found in systemd's places,
// then, in the initrd only (/etc/initrd-release), /.extra; none anywhere is no entries (tokens
// without a signed policy need none). A file that exists but does not parse is an error
// naming it.
[[nodiscard]] Result<PcrSignatureFile> load_pcr_signatures(const std::string& path);

}  // namespace ballast::crypt
