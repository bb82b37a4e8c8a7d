// Unified Kernel Images as systemd-stub 252 sees them: the PE sections of the image, and the
// value it and systemd-pcrphase leave in PCR 11 (sha256 bank), so that a release's PCR 11 can be
// signed before it ever boots (crypt/pcr_key.hpp) and a UKI checked before it is installed.
// Pure: bytes in, no files, no TPM.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
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

struct PeImage {
    uint64_t image_base = 0;
    uint32_t section_alignment = 0;
    std::vector<PeSection> sections;
    // What Authenticode hashes around (boot/authenticode.hpp): the file offsets of the optional
    // header's CheckSum and of the certificate table's data directory entry (0 when the optional
    // header is too short to have them), SizeOfHeaders, and the certificate table's file range
    // (size 0 when the image is unsigned), checked to lie inside the file.
    size_t checksum_offset = 0, cert_entry_offset = 0;
    size_t section_table_end = 0;
    // What EDK2's loader checks before it hashes (PeCoffLoaderGetPeHeader): the optional
    // header's size against its NumberOfRvaAndSizes (0 when too short to hold it), SizeOfImage.
    size_t optional_size = 0, optional_fixed = 0;  // fixed: 96 (PE32) or 112 (PE32+)
    uint32_t rva_count = 0, size_of_image = 0;
    uint32_t size_of_headers = 0;
    uint32_t cert_offset = 0, cert_size = 0;
};

// The headers and section table of a PE/COFF image (PE32 or PE32+, told apart by the optional
// header's magic). Anything that does not parse, or a section whose bytes lie outside the file,
// is Errc::parse naming `what`.
// `file_size`: the size of the whole file when `image` holds only its start (the headers and
// section table), as for reading one section of a file too large to load whole.
[[nodiscard]] Result<PeImage> pe_image(std::string_view image, std::string_view what,
                                       std::optional<uint64_t> file_size = std::nullopt);

// The section systemd's loader and stub take for `name` (pe.c locate_sections in 252): the last
// in the table whose name starts with it. nullptr when there is none.
[[nodiscard]] const PeSection* find_section(const PeImage& pe, std::string_view name);

// The bytes of `s` in the file: at most VirtualSize of its raw data (the rest of the loaded
// section is zeros). pe_image() has checked they lie inside the file.
[[nodiscard]] std::string_view file_bytes(std::string_view image, const PeSection& s);

// What systemd-stub 252 measures into PCR 11, in its order (src/fundamental/tpm-pcr.c). The
// stubs of systemd 254+ also measure .uname and .sbat: a UKI is predicted with the semantics of
// the stub inside it, which for Debian 12 is this list (stub_version() tells).
inline constexpr std::array<std::string_view, 7> kStub252Sections{
    ".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb", ".pcrpkey"};

struct UkiSection {
    std::string name;
    std::string_view data;  // the bytes in the file (into the image given)
    uint32_t zeros = 0;     // then this many zero bytes, up to VirtualSize
};

// The sections the stub measures, found its way (pe.c locate_sections in 252): a section whose
// name *starts with* the wanted one counts, the last such in the table wins, and one with a
// VirtualSize of 0 is not measured. In the stub's order. Views into `image`.
[[nodiscard]] Result<std::vector<UkiSection>> uki_sections(std::string_view image,
                                                           const PeImage& pe,
                                                           std::string_view what);

// The "systemd-stub NNN..." the stub's .sdmagic section names ("" when there is none).
[[nodiscard]] std::string stub_version(std::string_view image, const PeImage& pe);
// Whether uki_sections() and predict_pcr11() describe that stub: systemd-stub 252.
[[nodiscard]] bool predictable_stub(std::string_view version);

using Pcr = std::array<uint8_t, 32>;
// PCR 11 (sha256), starting from zeros: for each section, the SHA-256 of its name with the NUL
// and then of its bytes; then each of `phases` ("enter-initrd", ...; hashed without NUL). The
// sections must be in the stub's order, as uki_sections() gives them.
[[nodiscard]] Result<Pcr> predict_pcr11(std::span<const UkiSection> sections,
                                        std::span<const std::string> phases);

}  // namespace ballast::boot
