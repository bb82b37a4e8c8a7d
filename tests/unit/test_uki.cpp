// boot/uki: PE section tables and the PCR 11 systemd-stub 252 leaves, on hand-made images.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "ballast/boot/uki.hpp"
#include "ballast/core/bytes.hpp"
#include "ballast/core/encoding.hpp"
#include "ballast/core/sha256.hpp"

using namespace ballast;
using namespace ballast::boot;

namespace {

struct Sec {
    std::string name, data;
    uint32_t virtual_size = 0;  // 0: the data's size
};

// MZ header, PE signature, COFF header (no optional header), section table, the data.
std::string pe(const std::vector<Sec>& secs) {
    std::string out = "MZ";
    out.resize(0x3c, '\0');
    put_le<uint32_t>(out, 0x40);
    out += std::string("PE\0\0", 4);
    put_le<uint16_t>(out, 0x8664);
    put_le<uint16_t>(out, uint16_t(secs.size()));
    put_le<uint32_t>(out, 0);
    put_le<uint32_t>(out, 0);
    put_le<uint32_t>(out, 0);
    put_le<uint16_t>(out, 0);  // SizeOfOptionalHeader
    put_le<uint16_t>(out, 0x22);
    size_t data_at = out.size() + 40 * secs.size();
    std::string data;
    uint32_t va = 0x1000;
    for (const Sec& s : secs) {
        std::string name = s.name;
        name.resize(8, '\0');
        out += name;
        put_le<uint32_t>(out, s.virtual_size ? s.virtual_size : uint32_t(s.data.size()));
        put_le<uint32_t>(out, va);
        put_le<uint32_t>(out, uint32_t(s.data.size()));
        put_le<uint32_t>(out, uint32_t(data_at + data.size()));
        out += std::string(16, '\0');
        data += s.data;
        va += 0x1000;
    }
    return out + data;
}

std::string sha(std::string_view s) {
    auto d = sha256_digest(s).value();
    return {reinterpret_cast<const char*>(d.data()), d.size()};
}

}  // namespace

TEST_CASE("UKI sections come out in the stub's order, as loaded", "[boot][uki]") {
    // In the file: out of order, a section the stub does not measure, a padded one.
    std::string image = pe({{".text", "code"},
                            {".cmdline", "ro quiet"},
                            {".linux", "kernel"},
                            {".osrel", "ID=x\n", 8},
                            {".pcrsig", "{}"}});
    auto all = pe_sections(image, "u.efi");
    REQUIRE(all);
    REQUIRE(all->size() == 5);
    CHECK((*all)[1].name == ".cmdline");
    CHECK((*all)[1].virtual_address == 0x2000);
    auto measured = uki_sections(image, "u.efi");
    REQUIRE(measured);
    REQUIRE(measured->size() == 3);
    CHECK((*measured)[0].name == ".linux");
    CHECK((*measured)[1].name == ".osrel");
    CHECK((*measured)[1].data == std::string("ID=x\n\0\0\0", 8));  // zero-filled to VirtualSize
    CHECK((*measured)[2].name == ".cmdline");

    // PCR 11 by hand: extend(H(name\0)), extend(H(bytes)) per section, then the phase word.
    std::string pcr(32, '\0');
    auto extend = [&](std::string_view d) { pcr = sha(pcr + sha(d)); };
    for (const auto& s : *measured) {
        extend(s.name + std::string(1, '\0'));
        extend(s.data);
    }
    extend("enter-initrd");
    const std::vector<std::string> phases{"enter-initrd"};
    CHECK(predict_pcr11(*measured, phases).value() == pcr);
    CHECK(predict_pcr11(*measured, {}).value() != pcr);
}

TEST_CASE("UKI and PE images: what is refused", "[boot][uki][errors]") {
    auto error = [](const std::string& image) {
        auto r = pe_sections(image, "u.efi");
        REQUIRE_FALSE(r);
        CHECK(r.error().code() == Errc::parse);
        return r.error().what();
    };
    CHECK(error("") == "u.efi: not a PE image (no MZ header)");
    CHECK(error(std::string(100, 'x')) == "u.efi: not a PE image (no MZ header)");
    std::string good = pe({{".linux", "kernel"}});
    std::string bad_sig = good;
    bad_sig[0x41] = 'X';
    CHECK(error(bad_sig) == "u.efi: not a PE image (no PE signature)");
    std::string far = good;
    far[0x3c] = char(0xff);
    far[0x3d] = char(0xff);
    CHECK(error(far) == "u.efi: not a PE image (no PE signature)");
    CHECK(error(pe({})) == "u.efi: 0 sections (1-96 expected)");
    std::string many = good;
    many[0x46] = char(200);
    CHECK(error(many) == "u.efi: 200 sections (1-96 expected)");
    CHECK(error(good.substr(0, 0x40 + 24 + 20)) ==
          "u.efi: the section table runs past the end of the file");
    CHECK(error(good.substr(0, good.size() - 1)) == "u.efi: section .linux lies outside the file");

    auto twice = uki_sections(pe({{".linux", "a"}, {".linux", "b"}}), "u.efi");
    REQUIRE_FALSE(twice);
    CHECK(twice.error().what() == "u.efi: section .linux appears 2 times");
    auto huge = uki_sections(pe({{".linux", "a", 0x7fffffff}}), "u.efi");
    REQUIRE_FALSE(huge);
    CHECK(huge.error().what() ==
          "u.efi: section .linux claims 2147483647 bytes in memory, more than the file");
}
