#include "ballast/update/uki_build.hpp"

#include <algorithm>

#include "ballast/boot/uki.hpp"
#include "ballast/core/atomic_file.hpp"
#include "ballast/core/encoding.hpp"
#include "ballast/core/process.hpp"
#include "ballast/core/sha256.hpp"
#include "ballast/core/temp_dir.hpp"
#include "ballast/crypt/pcr_key.hpp"
#include "ballast/crypt/pcr_signature.hpp"
#include "ballast/crypt/policy.hpp"

namespace ballast::update {
namespace {

constexpr size_t kMaxPart = 512u << 20;  // a kernel or initrd; the UKI stays well below 4 GiB
constexpr size_t kMaxSmall = 1u << 20;   // command line, os-release, keys
constexpr uint64_t kPage = 0x1000;
// The kernel's section on a 2 MiB boundary, never below where dracut and the spec's proven
// recipe put it (verified-boot.md, section 2).
constexpr uint64_t kLinuxAlign = 0x200000;
constexpr uint64_t kLinuxMin = 0x2000000;

uint64_t align_up(uint64_t v, uint64_t a) {
    return (v + a - 1) / a * a;
}

std::vector<std::string> split_phases(const std::string& path) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= path.size()) {
        size_t colon = std::min(path.find(':', start), path.size());
        out.push_back(path.substr(start, colon - start));
        start = colon + 1;
    }
    return out;
}

Status check_phase_path(const std::string& path) {
    for (const std::string& word : split_phases(path))
        if (word.empty() || !std::ranges::all_of(word, [](char c) {
                return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
            }))
            return fail(Errc::invalid_argument,
                        "--phase '{}': expected words like enter-initrd, joined by ':'", path);
    return {};
}

struct Part {
    std::string name;  // ".linux"
    std::string file;  // what objcopy adds
    std::string data;
};

Result<Part> part(std::string name, const std::string& file, size_t max, std::string_view opt) {
    if (file.empty()) return fail(Errc::invalid_argument, "{} is required", opt);
    std::string data = BALLAST_TRY_CTX(read_file(file, max), "{}", opt);
    return Part{std::move(name), file, std::move(data)};
}

// The measured sections in the stub's order, as the stub will read them back.
std::vector<boot::UkiSection> measured(const std::vector<Part>& parts) {
    std::vector<boot::UkiSection> out;
    for (std::string_view name : boot::kStub252Sections)
        for (const Part& p : parts)
            if (p.name == name) out.push_back({p.name, p.data});
    return out;
}

// objcopy arguments placing each section after the stub's own, 4 KiB-aligned, the kernel on a
// 2 MiB boundary, none overlapping another.
Result<std::vector<std::string>> objcopy_argv(const UkiBuildOptions& o, std::string_view stub,
                                              const std::vector<Part>& parts,
                                              const std::string& out) {
    auto sections = BALLAST_TRY(boot::pe_sections(stub, o.stub));
    uint64_t next = 0;
    for (const auto& s : sections) {
        if (std::ranges::find(boot::kStub252Sections, s.name) != boot::kStub252Sections.end() ||
            s.name == ".pcrsig")
            return fail(Errc::invalid_argument, "{}: already has a {} section: not a bare stub",
                        o.stub, s.name);
        next = std::max<uint64_t>(next, uint64_t(s.virtual_address) + s.virtual_size);
    }
    std::vector<std::string> argv{"objcopy"};
    // Small sections first, then the kernel, then the initrd.
    std::vector<const Part*> order;
    for (const Part& p : parts)
        if (p.name != ".linux" && p.name != ".initrd") order.push_back(&p);
    for (const char* big : {".linux", ".initrd"})
        for (const Part& p : parts)
            if (p.name == big) order.push_back(&p);
    for (const Part* p : order) {
        uint64_t vma = align_up(next, kPage);
        if (p->name == ".linux") vma = std::max(kLinuxMin, align_up(next, kLinuxAlign));
        next = vma + p->data.size();
        if (next > UINT32_MAX)
            return fail(Errc::invalid_argument, "the UKI would be larger than 4 GiB");
        argv.push_back("--add-section");
        argv.push_back(p->name + "=" + p->file);
        argv.push_back("--change-section-vma");
        argv.push_back(fmt::format("{}=0x{:x}", p->name, vma));
    }
    argv.push_back(o.stub);
    argv.push_back(out);
    return argv;
}

}  // namespace

Result<UkiBuilt> build_uki(const UkiBuildOptions& o) {
    if (o.output.empty()) return fail(Errc::invalid_argument, "-o: where to write the UKI");
    if (o.sb_key.empty() != o.sb_cert.empty())
        return fail(Errc::invalid_argument,
                    "--secureboot-key and --secureboot-certificate go together");
    if (o.phases.empty()) return fail(Errc::invalid_argument, "--phase: at least one");
    for (const std::string& p : o.phases)
        BALLAST_TRY(check_phase_path(p));
    std::string stub = BALLAST_TRY_CTX(read_file(o.stub, kMaxSmall * 4), "--stub");

    std::vector<Part> parts;
    parts.push_back(BALLAST_TRY(part(".linux", o.linux_image, kMaxPart, "--linux")));
    parts.push_back(BALLAST_TRY(part(".osrel", o.os_release, kMaxSmall, "--os-release")));
    parts.push_back(BALLAST_TRY(part(".cmdline", o.cmdline, kMaxSmall, "--cmdline")));
    parts.push_back(BALLAST_TRY(part(".initrd", o.initrd, kMaxPart, "--initrd")));
    parts.push_back(BALLAST_TRY(part(".pcrpkey", o.pcr_public_key, kMaxSmall, "--pcr-public-key")));
    auto public_key = BALLAST_TRY_CTX(
        crypt::parse_pcr_public_key(parts.back().data, o.pcr_public_key), "--pcr-public-key");
    std::string private_key =
        BALLAST_TRY_CTX(read_file(o.pcr_private_key, kMaxSmall), "--pcr-private-key");

    // Sign PCR 11 for each phase path, from the bytes the stub will measure.
    const auto sections = measured(parts);
    UkiBuilt built;
    std::vector<crypt::PcrSignature> signatures;
    for (const std::string& path : o.phases) {
        std::string pcr = BALLAST_TRY(boot::predict_pcr11(sections, split_phases(path)));
        const std::string values[] = {pcr};
        auto sig = crypt::sign_pcr_policy(private_key, o.pcr_private_key, crypt::PcrBank::sha256,
                                          crypt::PcrMask{1} << 11, values);
        if (!sig) return std::unexpected(std::move(sig).error().context("--pcr-private-key"));
        if (sig->key_fingerprint != public_key.fingerprint)
            return fail(Errc::invalid_argument,
                        "--pcr-private-key {} is not the key of --pcr-public-key {}",
                        o.pcr_private_key, o.pcr_public_key);
        signatures.push_back(std::move(*sig));
        built.pcr11.push_back(to_hex(
            std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(pcr.data()), pcr.size())));
    }
    ::explicit_bzero(private_key.data(), private_key.size());

    auto tmp = BALLAST_TRY(TempDir::make("uki"));
    const std::string sig_file = tmp.path() + "/pcrsig.json";
    // As systemd-measure prints it: the JSON and a newline.
    BALLAST_TRY(write_file_atomic(sig_file, crypt::pcr_signatures_json(signatures) + "\n"));
    parts.push_back(Part{".pcrsig", sig_file, {}});
    const std::string unsigned_uki = tmp.path() + "/uki.efi";
    ProcessOptions p;
    p.argv = BALLAST_TRY(objcopy_argv(o, stub, parts, unsigned_uki));
    p.timeout = std::chrono::minutes(5);
    BALLAST_TRY(run_checked(p, "build the UKI (binutils)"));
    std::string result = unsigned_uki;
    if (!o.sb_key.empty()) {
        result = tmp.path() + "/uki.signed.efi";
        ProcessOptions s;
        s.argv = {"sbsign",  "--key",    o.sb_key, "--cert",
                  o.sb_cert, "--output", result,   unsigned_uki};
        s.timeout = std::chrono::minutes(5);
        BALLAST_TRY(run_checked(s, "sign the UKI for Secure Boot (sbsigntool)"));
        built.secure_boot_signed = true;
    }

    // What the stub will measure, read back from the file itself.
    std::string image = BALLAST_TRY(read_file(result, 2 * kMaxPart + kMaxSmall * 8));
    auto back = BALLAST_TRY(boot::uki_sections(image, result));
    const std::vector<std::string> enter{"enter-initrd"};
    std::string expected = BALLAST_TRY(boot::predict_pcr11(sections, enter));
    if (BALLAST_TRY(boot::predict_pcr11(back, enter)) != expected)
        return fail(Errc::failed,
                    "the UKI objcopy wrote would measure differently from what was signed");
    BALLAST_TRY(write_file_atomic(o.output, image));
    built.output = o.output;
    built.sha256 = BALLAST_TRY(sha256_hex(image));
    return built;
}

Result<UkiInspection> inspect_uki(const std::string& path) {
    std::string image = BALLAST_TRY(read_file(path, 2 * kMaxPart + kMaxSmall * 8));
    UkiInspection out;
    out.sections = BALLAST_TRY(boot::pe_sections(image, path));
    auto measured = BALLAST_TRY(boot::uki_sections(image, path));
    const std::vector<std::string> enter{"enter-initrd"};
    std::string pcr = BALLAST_TRY(boot::predict_pcr11(measured, enter));
    out.pcr11_enter_initrd =
        to_hex(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(pcr.data()), pcr.size()));
    std::optional<crypt::PcrPublicKey> key;
    for (const auto& s : measured) {
        if (s.name == ".cmdline") out.cmdline = s.data.substr(0, s.data.find('\0'));
        if (s.name == ".pcrpkey")
            key = BALLAST_TRY_CTX(crypt::parse_pcr_public_key(s.data, ".pcrpkey"), "{}", path);
    }
    if (key) out.pcr_key_fingerprint = to_hex(key->fingerprint);
    auto sig = std::ranges::find(out.sections, ".pcrsig", &boot::PeSection::name);
    if (sig == out.sections.end()) return out;
    std::string json(image.substr(sig->raw_offset, std::min(sig->raw_size, sig->virtual_size)));
    json = json.substr(0, json.find('\0'));  // the section is padded to the file alignment
    auto entries = BALLAST_TRY_CTX(crypt::parse_pcr_signatures(json, ".pcrsig"), "{}", path);
    out.signatures = entries.size();
    if (key) {
        const std::string values[] = {pcr};
        auto pol = BALLAST_TRY(crypt::policy_pcr(crypt::Digest{}, crypt::PcrBank::sha256,
                                                 crypt::PcrMask{1} << 11, values));
        const auto* entry = crypt::find_pcr_signature(
            entries, crypt::PcrBank::sha256, crypt::PcrMask{1} << 11, key->fingerprint, pol);
        out.signed_for_enter_initrd =
            entry && BALLAST_TRY(crypt::verify_pcr_signature(*key, *entry));
    }
    return out;
}

}  // namespace ballast::update
