#include "ballast/update/uki_build.hpp"

#include <algorithm>

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
constexpr size_t kMaxSmall = 1u << 20;   // command line, os-release, keys, the stub
constexpr size_t kMaxUki = 2 * kMaxPart + 8 * kMaxSmall;
constexpr uint64_t kPage = 0x1000;
// The kernel's section on a 2 MiB boundary, never below where dracut and the spec's proven
// recipe put it (verified-boot.md, section 2).
constexpr uint64_t kLinuxAlign = 0x200000;
constexpr uint64_t kLinuxMin = 0x2000000;
const crypt::PcrMask kPcr11 = crypt::PcrMask{1} << 11;

uint64_t align_up(uint64_t v, uint64_t a) {
    return (v + a - 1) / a * a;
}

// The private key's bytes are wiped on every way out.
struct Wiped {
    std::string text;
    ~Wiped() { ::explicit_bzero(text.data(), text.size()); }
};

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

// The measured parts in the stub's order, as the stub will read them back.
std::vector<boot::UkiSection> measured(const std::vector<Part>& parts) {
    std::vector<boot::UkiSection> out;
    for (std::string_view name : boot::kStub252Sections)
        for (const Part& p : parts)
            if (p.name == name) out.push_back({p.name, p.data, 0});
    return out;
}

Status require_predictable(std::string_view image, const boot::PeImage& pe, const std::string& what,
                           std::string& version) {
    version = boot::stub_version(image, pe);
    if (!boot::predictable_stub(version))
        return fail(Errc::unsupported,
                    "{}: stub '{}': Ballast predicts PCR 11 for systemd-stub 252 only (newer "
                    "stubs also measure .uname and .sbat)",
                    what, version.empty() ? "unknown (no .sdmagic)" : version);
    return {};
}

// objcopy arguments placing each section after the stub's own, at the stub's section
// alignment (at least a page), the kernel on a 2 MiB boundary, none overlapping another.
Result<std::vector<std::string>> objcopy_argv(const UkiBuildOptions& o, const boot::PeImage& stub,
                                              const std::vector<Part>& parts,
                                              const std::string& out) {
    uint64_t next = 0;
    for (const auto& s : stub.sections) {
        if (std::ranges::any_of(boot::kStub252Sections,
                                [&](std::string_view n) { return s.name.starts_with(n); }) ||
            s.name.starts_with(".pcrsig"))
            return fail(Errc::invalid_argument, "{}: already has a {} section: not a bare stub",
                        o.stub, s.name);
        next = std::max<uint64_t>(next, uint64_t(s.virtual_address) + s.virtual_size);
    }
    const uint64_t align = std::max<uint64_t>(kPage, stub.section_alignment);
    std::vector<std::string> argv{"objcopy"};
    // Small sections first, then the kernel, then the initrd.
    std::vector<const Part*> order;
    for (const Part& p : parts)
        if (p.name != ".linux" && p.name != ".initrd") order.push_back(&p);
    for (const char* big : {".linux", ".initrd"})
        for (const Part& p : parts)
            if (p.name == big) order.push_back(&p);
    for (const Part* p : order) {
        uint64_t rva = align_up(next, align);
        if (p->name == ".linux") rva = std::max(kLinuxMin, align_up(next, kLinuxAlign));
        next = rva + p->data.size();
        if (next > UINT32_MAX)
            return fail(Errc::invalid_argument, "the UKI would be larger than 4 GiB");
        argv.push_back("--add-section");
        argv.push_back(p->name + "=" + p->file);
        argv.push_back("--change-section-vma");
        // objcopy takes the address the image is linked at, not the RVA.
        argv.push_back(fmt::format("{}=0x{:x}", p->name, stub.image_base + rva));
    }
    argv.push_back(o.stub);
    argv.push_back(out);
    return argv;
}

Status check_no_overlap(const boot::PeImage& pe, std::string_view what) {
    std::vector<const boot::PeSection*> by_address;
    for (const auto& s : pe.sections)
        by_address.push_back(&s);
    std::ranges::sort(by_address, {}, &boot::PeSection::virtual_address);
    for (size_t i = 1; i < by_address.size(); ++i) {
        const auto& a = *by_address[i - 1];
        if (uint64_t(a.virtual_address) + a.virtual_size > by_address[i]->virtual_address)
            return fail(Errc::parse, "{}: sections {} and {} overlap in memory", what, a.name,
                        by_address[i]->name);
    }
    return {};
}

}  // namespace

Result<UkiInspection> inspect_uki_image(std::string_view image, const std::string& what) {
    UkiInspection out;
    auto pe = BALLAST_TRY(boot::pe_image(image, what));
    BALLAST_TRY(require_predictable(image, pe, what, out.stub));
    BALLAST_TRY(check_no_overlap(pe, what));
    auto sections = BALLAST_TRY(boot::uki_sections(image, pe, what));
    const std::vector<std::string> enter{"enter-initrd"};
    const boot::Pcr pcr = BALLAST_TRY(boot::predict_pcr11(sections, enter));
    out.pcr11_enter_initrd = to_hex(pcr);
    std::optional<crypt::PcrPublicKey> key;
    for (const auto& s : sections) {
        if (s.name == ".cmdline") out.cmdline = std::string(s.data.substr(0, s.data.find('\0')));
        if (s.name == ".pcrpkey")
            key = BALLAST_TRY_CTX(crypt::parse_pcr_public_key(s.data, ".pcrpkey"), "{}", what);
    }
    if (key) out.pcr_key_fingerprint = to_hex(key->fingerprint);
    out.sections = std::move(pe.sections);
    // The stub finds .pcrsig as it finds the measured sections: by prefix, the last one.
    const boot::PeSection* sig = nullptr;
    for (const auto& s : out.sections)
        if (s.name.starts_with(".pcrsig")) sig = &s;
    if (!sig || sig->virtual_size == 0) return out;
    std::string_view json = boot::file_bytes(image, *sig);
    auto entries = BALLAST_TRY_CTX(crypt::parse_pcr_signatures(json, ".pcrsig"), "{}", what);
    out.signatures = entries.size();
    if (key) {
        const std::string values[] = {std::string(pcr.begin(), pcr.end())};
        auto pol =
            BALLAST_TRY(crypt::policy_pcr(crypt::Digest{}, crypt::PcrBank::sha256, kPcr11, values));
        const auto* entry = crypt::find_pcr_signature(entries, crypt::PcrBank::sha256, kPcr11,
                                                      key->fingerprint, pol);
        out.signed_for_enter_initrd =
            entry && BALLAST_TRY(crypt::verify_pcr_signature(*key, *entry));
    }
    return out;
}

Result<UkiBuilt> build_uki(const UkiBuildOptions& o) {
    if (o.output.empty()) return fail(Errc::invalid_argument, "-o: where to write the UKI");
    if (o.sb_key.empty() != o.sb_cert.empty())
        return fail(Errc::invalid_argument,
                    "--secureboot-key and --secureboot-certificate go together");
    if (!o.sb_engine.empty() && o.sb_key.empty())
        return fail(Errc::invalid_argument, "--secureboot-engine needs --secureboot-key");
    if (!o.sb_key.empty() && o.sb_engine.empty())
        BALLAST_TRY_CTX(read_file(o.sb_key, kMaxSmall), "--secureboot-key");  // before objcopy
    if (o.phases.empty()) return fail(Errc::invalid_argument, "--phase: at least one");
    for (const std::string& p : o.phases)
        BALLAST_TRY(check_phase_path(p));
    const std::string stub = BALLAST_TRY_CTX(read_file(o.stub, 4 * kMaxSmall), "--stub");
    const auto stub_pe = BALLAST_TRY(boot::pe_image(stub, o.stub));
    std::string stub_version;
    BALLAST_TRY(require_predictable(stub, stub_pe, o.stub, stub_version));

    std::vector<Part> parts;
    parts.push_back(BALLAST_TRY(part(".linux", o.linux_image, kMaxPart, "--linux")));
    parts.push_back(BALLAST_TRY(part(".osrel", o.os_release, kMaxSmall, "--os-release")));
    parts.push_back(BALLAST_TRY(part(".cmdline", o.cmdline, kMaxSmall, "--cmdline")));
    parts.push_back(BALLAST_TRY(part(".initrd", o.initrd, kMaxPart, "--initrd")));
    parts.push_back(BALLAST_TRY(part(".pcrpkey", o.pcr_public_key, kMaxSmall, "--pcr-public-key")));
    auto public_key = BALLAST_TRY_CTX(
        crypt::parse_pcr_public_key(parts.back().data, o.pcr_public_key), "--pcr-public-key");
    Wiped private_key;
    private_key.text =
        BALLAST_TRY_CTX(read_file(o.pcr_private_key, kMaxSmall), "--pcr-private-key");

    // Sign PCR 11 for each phase path, from the bytes the stub will measure.
    const auto sections = measured(parts);
    UkiBuilt built;
    std::vector<crypt::PcrSignature> signatures;
    for (const std::string& path : o.phases) {
        const boot::Pcr pcr = BALLAST_TRY(boot::predict_pcr11(sections, split_phases(path)));
        const std::string values[] = {std::string(pcr.begin(), pcr.end())};
        auto sig = crypt::sign_pcr_policy(private_key.text, o.pcr_private_key,
                                          crypt::PcrBank::sha256, kPcr11, values);
        if (!sig) return std::unexpected(std::move(sig).error().context("--pcr-private-key"));
        if (sig->key_fingerprint != public_key.fingerprint)
            return fail(Errc::invalid_argument,
                        "--pcr-private-key {} is not the key of --pcr-public-key {}",
                        o.pcr_private_key, o.pcr_public_key);
        signatures.push_back(std::move(*sig));
        built.pcr11.push_back(to_hex(pcr));
    }

    auto tmp = BALLAST_TRY(TempDir::make("uki"));
    const std::string sig_file = tmp.path() + "/pcrsig.json";
    // As systemd-measure prints it: the JSON and a newline.
    Part pcrsig{".pcrsig", sig_file, crypt::pcr_signatures_json(signatures) + "\n"};
    BALLAST_TRY(write_file_atomic(sig_file, pcrsig.data));
    parts.push_back(std::move(pcrsig));
    const std::string unsigned_uki = tmp.path() + "/uki.efi";
    ProcessOptions p;
    p.argv = BALLAST_TRY(objcopy_argv(o, stub_pe, parts, unsigned_uki));
    p.timeout = std::chrono::minutes(5);
    BALLAST_TRY(run_checked(p, "build the UKI (binutils)"));
    std::string result = unsigned_uki;
    if (!o.sb_key.empty()) {
        result = tmp.path() + "/uki.signed.efi";
        ProcessOptions s;
        s.argv = {"sbsign"};
        if (!o.sb_engine.empty()) s.argv.insert(s.argv.end(), {"--engine", o.sb_engine});
        s.argv.insert(s.argv.end(),
                      {"--key", o.sb_key, "--cert", o.sb_cert, "--output", result, unsigned_uki});
        s.timeout = std::chrono::minutes(5);
        BALLAST_TRY(run_checked(s, "sign the UKI for Secure Boot (sbsigntool)"));
        built.secure_boot_signed = true;
    }

    // Read back and inspected as a node will: what was signed is what will be measured.
    const std::string image = BALLAST_TRY(read_file(result, kMaxUki));
    auto seen = BALLAST_TRY(inspect_uki_image(image, result));
    const std::vector<std::string> enter{"enter-initrd"};
    const boot::Pcr expected = BALLAST_TRY(boot::predict_pcr11(sections, enter));
    if (seen.pcr11_enter_initrd != to_hex(expected))
        return fail(Errc::failed,
                    "{}: the UKI objcopy wrote would measure {} at enter-initrd, not "
                    "the {} that was predicted from the inputs",
                    result, seen.pcr11_enter_initrd, to_hex(expected));
    if (std::ranges::find(o.phases, "enter-initrd") != o.phases.end() &&
        !seen.signed_for_enter_initrd)
        return fail(Errc::failed, "{}: its .pcrsig does not verify against its .pcrpkey", result);
    BALLAST_TRY(write_file_atomic(o.output, image));
    built.output = o.output;
    built.sha256 = BALLAST_TRY(sha256_hex(image));
    built.size = image.size();
    return built;
}

Result<std::string> read_uki(const std::string& path) {
    return read_file(path, kMaxUki);
}

Result<UkiInspection> inspect_uki(const std::string& path) {
    const std::string image = BALLAST_TRY(read_uki(path));
    return inspect_uki_image(image, path);
}

}  // namespace ballast::update
