// Unified Kernel Images as systemd-stub 252 sees them: the PE sections of the image, and the
// value it and systemd-pcrphase leave in PCR 11 (sha256 bank), so that a release's PCR 11 can be
// signed before it ever boots (crypt/pcr_key.hpp) and a UKI checked before it is installed.
// Pure: bytes in, no files, no TPM.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ballast/core/result.hpp"

namespace ballast::boot {

struct PeSection {
    std::string name;  // as in the section table, NULs stripped (at most 8 characters)
    uint32_t virtual_address = 0;
    uint32_t virtual_size = 0;
    uint32_t raw_offset = 0;
    uint32_t raw_size = 0;
};

// The section table of a PE/COFF image (PE32 or PE32+). Anything that does not parse, or a
// section whose bytes lie outside the file, is Errc::parse naming `what`.
[[nodiscard]] Result<std::vector<PeSection>> pe_sections(std::string_view image,
                                                         std::string_view what);

// What systemd-stub 252 measures into PCR 11, in its order (src/fundamental/tpm-pcr.c). The
// stubs of systemd 254+ also measure .uname and .sbat: a UKI is predicted with the semantics of
// the stub inside it, which for Debian 12 is this list.
inline constexpr std::array<std::string_view, 7> kStub252Sections{
    ".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb", ".pcrpkey"};

struct UkiSection {
    std::string name;
    std::string data;  // the bytes the stub measures: VirtualSize of them, zero-filled
};

// The measured sections of a UKI, in the stub's order; a section given twice is an error.
[[nodiscard]] Result<std::vector<UkiSection>> uki_sections(std::string_view image,
                                                           std::string_view what);

// PCR 11 (sha256), starting from zeros: for each section, the SHA-256 of its name with the NUL
// and then of its bytes; then each of `phases` ("enter-initrd", ...; hashed without NUL). The
// sections must be in the stub's order, as uki_sections() gives them. Raw 32 bytes.
[[nodiscard]] Result<std::string> predict_pcr11(std::span<const UkiSection> sections,
                                                std::span<const std::string> phases);

}  // namespace ballast::boot
