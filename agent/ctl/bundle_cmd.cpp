// bundle create / verify / inspect: offline, no daemon needed.
#include <cstdio>

#include "ballast/update/bundle.hpp"
#include "ctl.hpp"

namespace ballast::ctl {

int cmd_bundle_create(const GlobalOptions& g, const update::CreateOptions& o) {
    auto m = update::create_bundle(o);
    if (!m) return report_error(m.error());
    if (g.json)
        print_json(m->to_json());
    else
        std::printf("%s: %s %s (%s, %llu bytes, sha256 %s)\n", o.out.c_str(), m->os_name.c_str(),
                    m->version.c_str(), m->image.fstype.c_str(),
                    static_cast<unsigned long long>(m->image.size), m->image.sha256.c_str());
    return kExitOk;
}

int cmd_bundle_verify(const GlobalOptions& g, const std::string& src,
                      const std::string& keyring_arg) {
    const std::string keyring = keyring_arg.empty() ? update::default_keyring(g.root) : keyring_arg;
    auto b = update::Bundle::open(src);
    if (!b) return report_error(b.error());
    auto c = update::check_bundle(*b, keyring);
    if (!c) return report_error(c.error());
    if (auto st = update::verify_image(*c); !st)
        return report_error(std::move(st.error()).context(src));
    if (g.json)
        print_json(
            {{"valid", true}, {"signer", c->signer.subject}, {"manifest", c->manifest.to_json()}});
    else
        std::printf("%s: valid: %s %s for %s, signed by %s\n", src.c_str(),
                    c->manifest.os_name.c_str(), c->manifest.version.c_str(),
                    c->manifest.compatible.c_str(), c->signer.subject.c_str());
    return kExitOk;
}

int cmd_bundle_inspect(const GlobalOptions& g, const std::string& src) {
    auto b = update::Bundle::open(src);
    if (!b) return report_error(b.error());
    auto text = b->read_small(update::kManifestName);
    if (!text) return report_error(text.error());
    if (!*text)
        return report_error(
            Error(Errc::invalid_argument, src + ": not a bundle (no manifest.json)"));
    auto m = update::parse_manifest(**text);
    if (!m) return report_error(std::move(m.error()).context(src));
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
    std::printf("created:    %s\n", m->created.c_str());
    std::printf("signed:     %s (not checked; use `agentctl bundle verify`)\n", sig ? "yes" : "NO");
    return kExitOk;
}

}  // namespace ballast::ctl
