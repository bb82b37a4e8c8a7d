#include "ballast/boot/uki.hpp"

#include <algorithm>

#include "ballast/core/bytes.hpp"
#include "ballast/core/sha256.hpp"

namespace ballast::boot {
namespace {

// PE/COFF (Microsoft's pe-format): the "MZ" header points at "PE\0\0" at 0x3c; then the COFF
// header (20 bytes: NumberOfSections at +2, SizeOfOptionalHeader at +16), the optional header
// (magic 0x10b PE32 or 0x20b PE32+; ImageBase at +28 (4 bytes) or +24 (8 bytes);
// SectionAlignment at +32), and 40-byte section headers.
constexpr size_t kPeOffsetField = 0x3c;
constexpr size_t kCoffSize = 20;
constexpr size_t kSectionHeaderSize = 40;
constexpr uint16_t kPe32 = 0x10b;
constexpr uint16_t kPe32Plus = 0x20b;
constexpr size_t kOptionalMin = 36;  // up to and including SectionAlignment
// A UKI has a dozen sections; PE allows 96 in practice. More is not an image.
constexpr uint16_t kMaxSections = 96;

Result<Pcr> sha(std::string_view data) {
    return sha256_digest(data);
}

std::string_view view(const Pcr& d) {
    return {reinterpret_cast<const char*>(d.data()), d.size()};
}

Status extend(Pcr& pcr, const Pcr& digest) {
    auto h = BALLAST_TRY(Sha256::make());
    h.update(view(pcr));
    h.update(view(digest));
    pcr = h.digest();
    return {};
}

Result<Pcr> section_digest(const UkiSection& s) {
    auto h = BALLAST_TRY(Sha256::make());
    h.update(s.data);
    static const std::string zeros(64 * 1024, '\0');
    for (uint32_t left = s.zeros; left > 0;) {
        uint32_t n = std::min<uint32_t>(left, uint32_t(zeros.size()));
        h.update(std::string_view(zeros).substr(0, n));
        left -= n;
    }
    return h.digest();
}

}  // namespace

Result<PeImage> pe_image(std::string_view image, std::string_view what,
                         std::optional<uint64_t> file_size) {
    auto bad = [&](std::string_view why) { return fail(Errc::parse, "{}: {}", what, why); };
    const uint64_t size = file_size.value_or(image.size());
    if (image.size() < kPeOffsetField + 4 || image.substr(0, 2) != "MZ")
        return bad("not a PE image (no MZ header)");
    const size_t pe = le32(image, kPeOffsetField);
    if (pe > image.size() || image.size() - pe < 4 + kCoffSize ||
        image.substr(pe, 4) != std::string_view("PE\0\0", 4))
        return bad("not a PE image (no PE signature)");
    const size_t coff = pe + 4;
    const uint16_t count = le16(image, coff + 2);
    const size_t optional_size = le16(image, coff + 16);
    const size_t optional = coff + kCoffSize;
    if (optional_size < kOptionalMin || image.size() - optional < optional_size)
        return bad("not a PE image (no optional header)");
    PeImage out;
    const uint16_t magic = le16(image, optional);
    if (magic == kPe32Plus)
        out.image_base = le64(image, optional + 24);
    else if (magic == kPe32)
        out.image_base = le32(image, optional + 28);
    else
        return bad(fmt::format("not a PE32 or PE32+ image (optional header magic {:#x})", magic));
    out.section_alignment = le32(image, optional + 32);
    // SizeOfHeaders at +60, CheckSum at +64; the data directories (8 bytes each) after
    // NumberOfRvaAndSizes at +92 (PE32) or +108 (PE32+); the certificate table is entry 4.
    const size_t ndirs_at = magic == kPe32Plus ? 108 : 92;
    out.optional_size = optional_size;
    out.optional_fixed = ndirs_at + 4;
    if (optional_size >= ndirs_at + 4) {
        out.rva_count = le32(image, optional + ndirs_at);
        out.size_of_image = le32(image, optional + 56);
        out.size_of_headers = le32(image, optional + 60);
        out.checksum_offset = optional + 64;
        const size_t dirs = ndirs_at + 4;
        if (le32(image, optional + ndirs_at) > 4 && optional_size >= dirs + 5 * 8) {
            out.cert_entry_offset = optional + dirs + 4 * 8;
            out.cert_offset = le32(image, out.cert_entry_offset);  // a file offset, not an RVA
            out.cert_size = le32(image, out.cert_entry_offset + 4);
            if (out.cert_size == 0) out.cert_offset = 0;  // no table: where it points is moot
            if (out.cert_offset > size || size - out.cert_offset < out.cert_size)
                return bad("the certificate table lies outside the file");
        }
    }
    if (count == 0 || count > kMaxSections)
        return bad(fmt::format("{} sections (1-{} expected)", count, kMaxSections));
    const size_t table = optional + optional_size;
    if (table > image.size() || (image.size() - table) / kSectionHeaderSize < count)
        return bad("the section table runs past the end of the file");
    out.section_table_end = table + size_t(count) * kSectionHeaderSize;
    for (uint16_t i = 0; i < count; ++i) {
        const size_t at = table + size_t(i) * kSectionHeaderSize;
        PeSection s;
        std::string_view name = image.substr(at, 8);
        s.name = std::string(name.substr(0, std::min(name.find('\0'), name.size())));
        s.virtual_size = le32(image, at + 8);
        s.virtual_address = le32(image, at + 12);
        s.raw_size = le32(image, at + 16);
        s.raw_offset = le32(image, at + 20);
        if (s.raw_size != 0 && (s.raw_offset > size || size - s.raw_offset < s.raw_size))
            return bad(fmt::format("section {} lies outside the file", s.name));
        out.sections.push_back(std::move(s));
    }
    return out;
}

const PeSection* find_section(const PeImage& pe, std::string_view name) {
    const PeSection* found = nullptr;
    for (const PeSection& s : pe.sections)
        if (s.name.starts_with(name)) found = &s;  // the loader's memcmp on the prefix
    return found;
}

std::string_view file_bytes(std::string_view image, const PeSection& s) {
    if (s.raw_size == 0) return {};
    return image.substr(s.raw_offset, std::min(s.raw_size, s.virtual_size));
}

Result<std::vector<UkiSection>> uki_sections(std::string_view image, const PeImage& pe,
                                             std::string_view what) {
    std::vector<UkiSection> out;
    for (std::string_view name : kStub252Sections) {
        const PeSection* found = find_section(pe, name);
        if (!found || found->virtual_size == 0) continue;
        if (found->virtual_size > image.size())
            return fail(Errc::parse, "{}: section {} claims {} bytes in memory, more than the file",
                        what, found->name, found->virtual_size);
        UkiSection u{std::string(name), file_bytes(image, *found), 0};
        u.zeros = found->virtual_size - uint32_t(u.data.size());
        out.push_back(std::move(u));
    }
    return out;
}

std::string stub_version(std::string_view image, const PeImage& pe) {
    constexpr std::string_view marker = "LoaderInfo: ";
    for (const PeSection& s : pe.sections) {
        if (s.name != ".sdmagic") continue;
        std::string_view text = file_bytes(image, s);
        size_t at = text.find(marker);
        if (at == std::string_view::npos) return {};
        text = text.substr(at + marker.size());
        return std::string(text.substr(0, std::min(text.find(" ####"), text.size())));
    }
    return {};
}

bool predictable_stub(std::string_view version) {
    return version.starts_with("systemd-stub 252");
}

Result<Pcr> predict_pcr11(std::span<const UkiSection> sections,
                          std::span<const std::string> phases) {
    Pcr pcr{};
    for (const UkiSection& s : sections) {
        const Pcr name = BALLAST_TRY(sha(s.name + std::string(1, '\0')));
        BALLAST_TRY(extend(pcr, name));
        const Pcr data = BALLAST_TRY(section_digest(s));
        BALLAST_TRY(extend(pcr, data));
    }
    for (const std::string& phase : phases) {
        const Pcr word = BALLAST_TRY(sha(phase));
        BALLAST_TRY(extend(pcr, word));
    }
    return pcr;
}

}  // namespace ballast::boot
