// uki: a release's Unified Kernel Image, built and inspected offline (on the build host).
#include <cstdio>

#include "ctl.hpp"

namespace ballast::ctl {

int cmd_uki_build(const GlobalOptions& g, const update::UkiBuildOptions& o) {
    auto built = update::build_uki(o);
    if (!built) return report_error(built.error().context("uki build"));
    if (g.json) {
        print_json({{"output", built->output},
                    {"sha256", built->sha256},
                    {"pcr11", built->pcr11},
                    {"phases", o.phases},
                    {"secure_boot_signed", built->secure_boot_signed}});
        return kExitOk;
    }
    std::printf("%s (sha256 %s)%s\n", built->output.c_str(), built->sha256.c_str(),
                built->secure_boot_signed ? ", signed for Secure Boot" : "");
    for (size_t i = 0; i < o.phases.size(); ++i)
        std::printf("  PCR 11 at %s: %s (signed)\n", o.phases[i].c_str(), built->pcr11[i].c_str());
    return kExitOk;
}

int cmd_uki_inspect(const GlobalOptions& g, const std::string& path) {
    auto u = update::inspect_uki(path);
    if (!u) return report_error(u.error().context("uki inspect"));
    nlohmann::json sections = nlohmann::json::array();
    for (const auto& s : u->sections)
        sections.push_back({{"name", s.name},
                            {"vma", s.virtual_address},
                            {"size", s.virtual_size},
                            {"file_offset", s.raw_offset},
                            {"file_size", s.raw_size}});
    if (g.json) {
        print_json({{"stub", u->stub},
                    {"sections", sections},
                    {"cmdline", u->cmdline},
                    {"pcr11_enter_initrd", u->pcr11_enter_initrd},
                    {"pcr_key_fingerprint", u->pcr_key_fingerprint.value_or("")},
                    {"signatures", u->signatures},
                    {"signed_for_enter_initrd", u->signed_for_enter_initrd}});
        return kExitOk;
    }
    std::printf("%s (%s)\n", path.c_str(), u->stub.c_str());
    for (const auto& s : u->sections)
        std::printf("  %-9s vma 0x%08x  %10u bytes\n", s.name.c_str(), s.virtual_address,
                    s.virtual_size);
    std::printf("  command line: %s\n", u->cmdline.c_str());
    std::printf("  PCR 11 at enter-initrd: %s\n", u->pcr11_enter_initrd.c_str());
    std::printf("  PCR key: %s\n",
                u->pcr_key_fingerprint ? u->pcr_key_fingerprint->c_str() : "none (.pcrpkey)");
    std::printf("  .pcrsig: %zu signature(s), %s\n", u->signatures,
                u->signed_for_enter_initrd ? "one by the PCR key for enter-initrd"
                                           : "NONE by the PCR key for enter-initrd");
    return kExitOk;
}

}  // namespace ballast::ctl
