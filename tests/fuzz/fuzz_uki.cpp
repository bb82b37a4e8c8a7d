// libFuzzer target: bytes as a UKI (boot/uki.hpp) with its Authenticode signatures
// (boot/authenticode.hpp), as a PCR signature file (crypt/pcr_signature.hpp), as EFI signature
// lists (boot/secure_boot.hpp: db and dbx) and as Authenticode indirect data. `agentctl uki
// inspect` and `uki verify` read UKIs they did not build, and nodes will read the ones bundles
// carry; any crash, sanitizer report, or a measured section whose size is not its header's
// VirtualSize is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "ballast/boot/authenticode.hpp"
#include "ballast/boot/secure_boot.hpp"
#include "ballast/boot/uki.hpp"
#include "ballast/crypt/pcr_signature.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);
    (void)ballast::crypt::parse_pcr_signatures(bytes, "fuzz");
    (void)ballast::boot::parse_signature_lists(bytes, "fuzz");
    (void)ballast::boot::parse_indirect_data(bytes, "fuzz");
    auto pe = ballast::boot::pe_image(bytes, "fuzz");
    if (!pe) return 0;
    (void)ballast::boot::authenticode_table(bytes, *pe);
    // The whole verdict, PKCS#7 through OpenSSL included, against empty databases.
    (void)ballast::boot::check_image_signer(bytes, {}, {}, "fuzz");
    (void)ballast::boot::stub_version(bytes, *pe);
    auto measured = ballast::boot::uki_sections(bytes, *pe, "fuzz");
    if (!measured) return 0;
    for (const auto& s : *measured) {
        bool found = false;
        for (const auto& p : pe->sections)
            if (p.name.starts_with(s.name) && s.data.size() + s.zeros == p.virtual_size)
                found = true;
        if (!found) std::abort();
    }
    const std::vector<std::string> phases{"enter-initrd"};
    auto pcr = ballast::boot::predict_pcr11(*measured, phases);
    if (pcr && pcr->size() != 32) std::abort();
    return 0;
}
