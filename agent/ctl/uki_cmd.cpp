// uki: a release's Unified Kernel Image, built and inspected offline (on the build host).
#include <cstdio>

#include "ballast/boot/secure_boot.hpp"
#include "ballast/core/atomic_file.hpp"
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

namespace {

nlohmann::json signers_json(const std::vector<boot::SignerVerdict::Signer>& signers) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& sg : signers)
        out.push_back({{"subject", sg.subject}, {"signs_image", sg.signs_image}});
    return out;
}

}  // namespace

int cmd_uki_inspect(const GlobalOptions& g, const std::string& path) {
    // Read once: the measured-boot inspection and the Secure Boot signer use the same bytes.
    auto image = update::read_uki(path);
    if (!image) return report_error(image.error().context("uki inspect"));
    auto u = update::inspect_uki_image(*image, path);
    if (!u) return report_error(u.error().context("uki inspect"));
    // Who signed it for Secure Boot (judged against nothing: `uki verify` judges). What cannot
    // be read here is reported, not fatal: the rest of the inspection stands.
    nlohmann::json secure_boot = {{"authenticode_sha256", ""},
                                  {"signers", nlohmann::json::array()}};
    std::string signature_text;
    const auto judged = boot::check_image_signer(*image, {}, {}, path);
    if (judged) {
        secure_boot["authenticode_sha256"] = judged->digest;
        secure_boot["signers"] = signers_json(judged->signers);
        for (const auto& sg : judged->signers)
            signature_text += (signature_text.empty() ? "" : ", ") + sg.subject +
                              (sg.signs_image ? "" : " (NOT over this image)");
        if (signature_text.empty()) signature_text = "none";
    } else {
        secure_boot["error"] = judged.error().what();
        signature_text = fmt::format("unreadable ({})", judged.error().what());
    }
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
                    {"signed_for_enter_initrd", u->signed_for_enter_initrd},
                    {"secure_boot", secure_boot}});
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
    if (judged) std::printf("  Authenticode SHA-256: %s\n", judged->digest.c_str());
    std::printf("  Secure Boot signature: %s\n", signature_text.c_str());
    return kExitOk;
}

int cmd_uki_verify(const GlobalOptions& g, const std::string& path, const std::string& db_file,
                   const std::string& dbx_file) {
    auto fail_with = [](Error e) { return report_error(std::move(e).context("uki verify")); };
    boot::SignatureDb db, dbx;
    std::string source;
    std::optional<boot::SecureBootState> sb;
    if (db_file.empty()) {
        auto st = boot::read_secure_boot();
        if (!st) return fail_with(std::move(st.error()).context("give --db and --dbx"));
        sb = std::move(*st);
        db = sb->db;
        dbx = sb->dbx;
        source = boot::kEfivars;
    } else {
        for (auto [file, out] : {std::pair{&db_file, &db}, {&dbx_file, &dbx}}) {
            if (file->empty()) continue;
            auto text = read_file(*file, 1u << 20);
            if (!text) return fail_with(std::move(text.error()));
            auto parsed = boot::parse_signature_lists(*text, *file);
            if (!parsed) return fail_with(std::move(parsed.error()));
            *out = std::move(*parsed);
        }
        source = dbx_file.empty() ? db_file : db_file + ", " + dbx_file;
    }
    auto image = read_file(path, 512u << 20);
    if (!image) return fail_with(std::move(image.error()));
    auto v = boot::check_image_signer(*image, db, dbx, path);
    if (!v) return fail_with(std::move(v.error()));
    if (g.json) {
        nlohmann::json out = {{"allowed", v->allowed},
                              {"reason", v->reason},
                              {"authenticode_sha256", v->digest},
                              {"signers", signers_json(v->signers)},
                              {"unjudged_dbx_entries", v->unjudged_dbx},
                              {"databases", source}};
        if (sb) out["secure_boot"] = {{"enabled", sb->enabled}, {"setup_mode", sb->setup_mode}};
        print_json(out);
    } else {
        std::printf("%s: %s: %s\n", path.c_str(), v->allowed ? "allowed" : "REFUSED",
                    v->reason.c_str());
        std::printf("  Authenticode SHA-256: %s\n  checked against: %s\n", v->digest.c_str(),
                    source.c_str());
        if (sb)
            std::printf("  Secure Boot: %s%s\n", sb->enabled ? "enforcing" : "off",
                        sb->setup_mode ? " (setup mode)" : "");
        if (v->unjudged_dbx)
            std::printf(
                "  dbx also holds %zu entries of types not judged here (SHA-1/384/512 "
                "hashes, ...)\n",
                v->unjudged_dbx);
    }
    return v->allowed ? kExitOk : kExitFailure;
}

}  // namespace ballast::ctl
