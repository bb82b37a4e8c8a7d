#include "ballast/boot/uki.hpp"

#include <algorithm>

#include "ballast/core/bytes.hpp"
#include "ballast/core/sha256.hpp"

namespace ballast::boot {
namespace {

// PE/COFF (Microsoft's pe-format): the "MZ" header points at "PE\0\0" at 0x3c; then the COFF
// header (20 bytes: NumberOfSections at +2, SizeOfOptionalHeader at +16), the optional header,
// and 40-byte section headers.
constexpr size_t kPeOffsetField = 0x3c;
constexpr size_t kCoffSize = 20;
constexpr size_t kSectionHeaderSize = 40;
// A UKI has a dozen sections; PE allows 96 in practice. More is not an image.
constexpr uint16_t kMaxSections = 96;

Result<std::string> sha256_raw(std::string_view data) {
    auto d = BALLAST_TRY(sha256_digest(data));
    return std::string(reinterpret_cast<const char*>(d.data()), d.size());
}

Status extend(std::string& pcr, std::string_view data) {
    std::string digest = BALLAST_TRY(sha256_raw(data));
    pcr = BALLAST_TRY(sha256_raw(pcr + digest));
    return {};
}

}  // namespace

Result<std::vector<PeSection>> pe_sections(std::string_view image, std::string_view what) {
    auto bad = [&](std::string_view why) { return fail(Errc::parse, "{}: {}", what, why); };
    if (image.size() < kPeOffsetField + 4 || image.substr(0, 2) != "MZ")
        return bad("not a PE image (no MZ header)");
    const size_t pe = le32(image, kPeOffsetField);
    if (pe > image.size() || image.size() - pe < 4 + kCoffSize ||
        image.substr(pe, 4) != std::string_view("PE\0\0", 4))
        return bad("not a PE image (no PE signature)");
    const size_t coff = pe + 4;
    const uint16_t count = le16(image, coff + 2);
    const uint16_t optional_size = le16(image, coff + 16);
    if (count == 0 || count > kMaxSections)
        return bad(fmt::format("{} sections (1-{} expected)", count, kMaxSections));
    const size_t table = coff + kCoffSize + optional_size;
    if (table > image.size() || (image.size() - table) / kSectionHeaderSize < count)
        return bad("the section table runs past the end of the file");
    std::vector<PeSection> out;
    for (uint16_t i = 0; i < count; ++i) {
        const size_t at = table + size_t(i) * kSectionHeaderSize;
        PeSection s;
        std::string_view name = image.substr(at, 8);
        s.name = std::string(name.substr(0, std::min(name.find('\0'), name.size())));
        s.virtual_size = le32(image, at + 8);
        s.virtual_address = le32(image, at + 12);
        s.raw_size = le32(image, at + 16);
        s.raw_offset = le32(image, at + 20);
        if (s.raw_size != 0 &&
            (s.raw_offset > image.size() || image.size() - s.raw_offset < s.raw_size))
            return bad(fmt::format("section {} lies outside the file", s.name));
        out.push_back(std::move(s));
    }
    return out;
}

Result<std::vector<UkiSection>> uki_sections(std::string_view image, std::string_view what) {
    auto all = BALLAST_TRY(pe_sections(image, what));
    std::vector<UkiSection> out;
    for (std::string_view name : kStub252Sections) {
        auto n = std::ranges::count(all, name, &PeSection::name);
        if (n > 1) return fail(Errc::parse, "{}: section {} appears {} times", what, name, n);
        auto it = std::ranges::find(all, name, &PeSection::name);
        if (it == all.end()) continue;
        if (it->virtual_size > image.size())
            return fail(Errc::parse, "{}: section {} claims {} bytes in memory, more than the file",
                        what, name, it->virtual_size);
        // The stub measures the section as loaded: VirtualSize bytes, the part past the raw data
        // zero-filled by the loader.
        std::string data(image.substr(it->raw_offset, std::min(it->raw_size, it->virtual_size)));
        data.resize(it->virtual_size, '\0');
        out.push_back({std::string(name), std::move(data)});
    }
    return out;
}

Result<std::string> predict_pcr11(std::span<const UkiSection> sections,
                                  std::span<const std::string> phases) {
    std::string pcr(32, '\0');
    for (const UkiSection& s : sections) {
        BALLAST_TRY(extend(pcr, std::string(s.name) + '\0'));
        BALLAST_TRY(extend(pcr, s.data));
    }
    for (const std::string& phase : phases)
        BALLAST_TRY(extend(pcr, phase));
    return pcr;
}

}  // namespace ballast::boot
