// bundle create / verify / export / inspect: offline, no daemon needed.
#include <cstdio>

#include "ballast/core/atomic_file.hpp"
#include "ballast/update/bundle.hpp"
#include "ballast/update/oci_bundle.hpp"
#include "ballast/update/registry.hpp"
#include "ctl.hpp"

namespace ballast::ctl {

int cmd_bundle_create(const GlobalOptions& g, const update::CreateOptions& o) {
    auto m = update::create_bundle(o);
    if (!m) return report_error(m.error());
    if (g.json)
        print_json(m->to_json());
    else
        std::printf("%s: %s %s (%s, %llu bytes, sha256 %s)%s\n", o.out.c_str(), m->os_name.c_str(),
                    m->version.c_str(), m->image.fstype.c_str(),
                    static_cast<unsigned long long>(m->image.size), m->image.sha256.c_str(),
                    m->uki ? fmt::format(", UKI sha256 {}", m->uki->sha256).c_str() : "");
    return kExitOk;
}

int cmd_bundle_verify(const GlobalOptions& g, const std::string& src,
                      const std::string& keyring_arg) {
    const std::string keyring = keyring_arg.empty() ? update::default_keyring(g.root) : keyring_arg;
    auto b = update::Bundle::open(src);
    if (!b) return report_error(b.error());
    auto c = update::check_bundle(*b, keyring);
    if (!c) return report_error(c.error());
    const auto& index = c->index;
    if (auto st = update::verify_image(*c, {}, index ? &*index : nullptr); !st)
        return report_error(std::move(st.error()).context(src));
    const size_t chunks = index ? index->chunks.size() : 0;
    const auto& uki = c->uki;
    if (g.json) {
        nlohmann::json out = {{"valid", true},
                              {"signer", c->signer.subject},
                              {"manifest", c->manifest.to_json()},
                              {"chunks", chunks}};
        if (uki)
            out["uki"] = {{"stub", uki->stub},
                          {"cmdline", uki->cmdline},
                          {"pcr11_enter_initrd", uki->pcr11_enter_initrd},
                          {"pcr_key_fingerprint", uki->pcr_key_fingerprint.value_or("")}};
        print_json(out);
    } else {
        std::printf("%s: valid: %s %s for %s, signed by %s%s\n", src.c_str(),
                    c->manifest.os_name.c_str(), c->manifest.version.c_str(),
                    c->manifest.compatible.c_str(), c->signer.subject.c_str(),
                    index ? fmt::format(", {} chunks indexed", chunks).c_str() : "");
        if (uki)
            std::printf("  UKI %s (%s): PCR 11 at enter-initrd %s, signed by PCR key %s\n",
                        c->manifest.uki->file.c_str(), uki->stub.c_str(),
                        uki->pcr11_enter_initrd.c_str(),
                        uki->pcr_key_fingerprint.value_or("").c_str());
    }
    return kExitOk;
}

int cmd_bundle_export(const GlobalOptions& g, const std::string& src, const std::string& layout,
                      const std::string& tag_arg) {
    auto b = update::Bundle::open(src);
    if (!b) return report_error(b.error());
    std::string tag = tag_arg;
    if (tag.empty()) {
        auto m = update::read_manifest(*b);
        if (!m) return report_error(m.error());
        tag = m->version;
        if (!update::oci::valid_tag(tag))
            return report_error(Error(Errc::invalid_argument,
                                      fmt::format("the version '{}' is not a valid OCI tag: "
                                                  "name one with --tag",
                                                  tag)));
    }
    auto r = update::oci::export_layout(*b, layout, tag);
    if (!r) return report_error(std::move(r.error()).context("export " + src));
    if (g.json)
        print_json({{"layout", layout},
                    {"tag", tag},
                    {"digest", r->manifest_digest},
                    {"bytes", r->bytes}});
    else
        std::printf("%s:%s: %s (%llu bytes of blobs)\n", layout.c_str(), tag.c_str(),
                    r->manifest_digest.c_str(), static_cast<unsigned long long>(r->bytes));
    return kExitOk;
}

int cmd_bundle_push(const GlobalOptions& g, const std::string& src, const std::string& ref_text,
                    const std::string& auth_file_arg, const std::string& ca_file) {
    auto ref = update::oci::parse_reference(ref_text);
    if (!ref) return report_error(ref.error());
    auto b = update::Bundle::open(src);
    if (!b) return report_error(b.error());
    std::optional<update::oci::Credential> cred;
    const auto auth_file = auth_file_arg.empty() ? update::oci::default_auth_file()
                                                 : std::optional<std::string>(auth_file_arg);
    if (auth_file) {
        auto text = read_file(*auth_file, 1u << 20);
        if (!text) return report_error(text.error());
        auto auths = update::oci::parse_auths(*text, *auth_file);
        if (!auths) return report_error(auths.error());
        cred = update::oci::find_credential(*auths, *ref);
    }
    http::Options h;
    h.ca_file = ca_file;
    update::oci::Client client(*ref, cred, h);
    auto r = update::oci::push_bundle(*b, client, [&](const update::oci::PushProgress& p) {
        if (g.json) return;
        if (p.already_there)
            std::fprintf(stderr, "  %s: already there\n", p.blob.c_str());
        else if (p.done == p.total)
            std::fprintf(stderr, "  %s: %llu bytes uploaded\n", p.blob.c_str(),
                         static_cast<unsigned long long>(p.total));
    });
    if (!r) return report_error(std::move(r.error()).context("push " + ref->str()));
    if (g.json)
        print_json({{"reference", ref->str()},
                    {"digest", r->digest},
                    {"bytes", r->total},
                    {"uploaded", r->uploaded},
                    {"skipped", r->skipped}});
    else
        std::printf("%s@%s: %llu bytes uploaded, %llu already there\n", ref->str().c_str(),
                    r->digest.c_str(), static_cast<unsigned long long>(r->uploaded),
                    static_cast<unsigned long long>(r->skipped));
    return kExitOk;
}

int cmd_bundle_inspect(const GlobalOptions& g, const std::string& src) {
    auto b = update::Bundle::open(src);
    if (!b) return report_error(b.error());
    auto m = update::read_manifest(*b);
    if (!m) return report_error(m.error());
    auto sig = b->member(update::kSignatureName);
    if (g.json) {
        auto j = m->to_json();
        print_json({{"manifest", j},
                    {"signed", sig.has_value()},
                    {"layout", b->is_tar() ? "tar" : "folder"}});
        return kExitOk;
    }
    std::printf("bundle:     %s (%s)\n", src.c_str(), b->is_tar() ? "tar" : "folder");
    std::printf("os:         %s %s\n", m->os_name.c_str(), m->version.c_str());
    std::printf("compatible: %s\n", m->compatible.c_str());
    std::printf("image:      %s, %s, %llu bytes\n", m->image.file.c_str(), m->image.fstype.c_str(),
                static_cast<unsigned long long>(m->image.size));
    std::printf("sha256:     %s\n", m->image.sha256.c_str());
    if (m->index)
        std::printf("index:      %s, %llu bytes, sha256 %s\n", m->index->file.c_str(),
                    static_cast<unsigned long long>(m->index->size), m->index->sha256.c_str());
    else
        std::printf("index:      none (no delta downloads)\n");
    if (m->verity)
        std::printf("verity:     root hash %s, tree at %llu\n", m->verity->root_hash.c_str(),
                    static_cast<unsigned long long>(m->verity->hash_offset));
    if (m->uki)
        std::printf("uki:        %s, %llu bytes, sha256 %s\n", m->uki->file.c_str(),
                    static_cast<unsigned long long>(m->uki->size), m->uki->sha256.c_str());
    std::printf("created:    %s\n", m->created.c_str());
    std::printf("signed:     %s (not checked; use `agentctl bundle verify`)\n", sig ? "yes" : "NO");
    return kExitOk;
}

}  // namespace ballast::ctl
