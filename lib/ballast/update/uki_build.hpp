// Building a release's Unified Kernel Image: the Debian 12 systemd-stub with the kernel, initrd,
// command line and os-release added by objcopy (there is no ukify in systemd 252), the PCR
// public key as .pcrpkey, and .pcrsig: the PCR 11 signature Ballast computes itself, for the
// phases asked (enter-initrd by default), so that keys sealed to that key open on the release's
// first boot with no reseal. Optionally sbsigned for Secure Boot. The result is read back and
// inspected as a node would, so what was signed is what will be measured.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ballast/boot/uki.hpp"
#include "ballast/core/result.hpp"

namespace ballast::update {

inline constexpr const char* kDefaultStub = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";

struct UkiBuildOptions {
    std::string stub = kDefaultStub;
    std::string linux_image, initrd, cmdline, os_release;  // files
    std::string pcr_private_key, pcr_public_key;           // PEM, RSA
    // Each a colon-separated phase path as systemd-measure takes it ("enter-initrd",
    // "enter-initrd:leave-initrd"); one signature each.
    std::vector<std::string> phases{"enter-initrd"};
    // sbsign them both, or neither; with an engine (sbsign --engine, e.g. pkcs11) the key is
    // the engine's name for it rather than a file.
    std::string sb_key, sb_cert, sb_engine;
    std::string output;
};

struct UkiBuilt {
    std::string output;
    std::vector<std::string> pcr11;  // hex, one per phase path, as signed
    std::string sha256;              // of the file written
    uint64_t size = 0;
    bool secure_boot_signed = false;
};

[[nodiscard]] Result<UkiBuilt> build_uki(const UkiBuildOptions& o);

// What a UKI will do at boot, read from the file: its stub, sections, the PCR 11 the stub and
// enter-initrd will leave, and whether its .pcrsig holds a valid signature of that value by its
// own .pcrpkey (what a key sealed to that PCR key needs). A stub whose measurements Ballast
// does not predict (not systemd-stub 252) or overlapping sections are errors.
struct UkiInspection {
    std::string stub;  // "systemd-stub 252.39-1~deb12u2"
    std::vector<boot::PeSection> sections;
    std::string pcr11_enter_initrd;  // hex
    std::string cmdline;
    std::optional<std::string> pcr_key_fingerprint;  // hex, of .pcrpkey
    size_t signatures = 0;                           // entries in .pcrsig
    bool signed_for_enter_initrd = false;
};
[[nodiscard]] Result<UkiInspection> inspect_uki(const std::string& path);
// A UKI file's bytes, bounded as inspect_uki() bounds them.
[[nodiscard]] Result<std::string> read_uki(const std::string& path);
// The same over the image's bytes (a bundle member); `what` names it in messages.
[[nodiscard]] Result<UkiInspection> inspect_uki_image(std::string_view image,
                                                      const std::string& what);

}  // namespace ballast::update
