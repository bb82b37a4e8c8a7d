// libFuzzer target: bytes as a UKI (boot/uki.hpp) and as a PCR signature file
// (crypt/pcr_signature.hpp). A UKI reaches a node inside a bundle, before the agent checks it
// against the ESP's Secure Boot keys; any crash, sanitizer report, or accepted section whose
// measured bytes are not what its header says is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "ballast/boot/uki.hpp"
#include "ballast/crypt/pcr_signature.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);
    (void)ballast::crypt::parse_pcr_signatures(bytes, "fuzz");
    auto sections = ballast::boot::pe_sections(bytes, "fuzz");
    auto measured = ballast::boot::uki_sections(bytes, "fuzz");
    if (!measured) return 0;
    if (!sections) std::abort();  // the measured sections come from the same table
    for (const auto& s : *measured) {
        bool found = false;
        for (const auto& p : *sections)
            if (p.name == s.name) {
                found = true;
                if (s.data.size() != p.virtual_size) std::abort();
            }
        if (!found) std::abort();
    }
    const std::vector<std::string> phases{"enter-initrd"};
    auto pcr = ballast::boot::predict_pcr11(*measured, phases);
    if (pcr && pcr->size() != 32) std::abort();
    return 0;
}
