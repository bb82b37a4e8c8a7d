// downloads: https into the node, verified against sha256 when given; a file that already
// matches is not fetched again.
#include <sys/stat.h>

#include "ballast/core/files.hpp"
#include "ballast/core/sha256.hpp"
#include "ballast/stages/modules.hpp"

namespace ballast::stages::modules {

void downloads(const config::Step& s, StageContext& ctx, ModuleResult& r) {
    OwnerResolver owners(ctx.root);
    for (const auto& d : s.downloads) {
        auto owner = owners.resolve(d.owner, d.group);
        if (!owner) {
            r.error(d.path + ": " + owner.error().what());
            continue;
        }
        const mode_t mode = d.mode.value_or(0644);
        auto cur = read_beneath(ctx.root, d.path, 1ull << 32);
        if (!cur) {
            r.error(cur.error().what());
            continue;
        }
        auto h = Sha256::make();
        if (!h) {
            r.error(h.error().what());
            continue;
        }
        if (*cur && !d.sha256.empty() && sha256_hex(**cur) == d.sha256) {
            auto changed = ensure_file(ctx.root, d.path, **cur, mode, owner->uid, owner->gid);
            if (!changed)
                r.error(changed.error().what());
            else if (*changed)
                r.change("set mode/owner of " + d.path);
            continue;
        }
        auto [parent, base] = split_node_path(d.path);
        if (auto made = mkdirs_beneath(ctx.root, parent, 0755); !made) {
            r.error(made.error().what());
            continue;
        }
        auto w = BeneathWriter::open(ctx.root, d.path);
        if (!w) {
            r.error(w.error().what());
            continue;
        }
        std::string body;  // kept only to compare with the current file when no sha256 is given
        http::Options opts = ctx.http;
        if (d.timeout.count()) opts.timeout = d.timeout;
        auto got = http::get(d.url, opts, [&](std::span<const char> chunk) -> Status {
            h->update(std::string_view(chunk.data(), chunk.size()));
            if (d.sha256.empty()) body.append(chunk.data(), chunk.size());
            return w->write(std::string_view(chunk.data(), chunk.size()));
        });
        if (!got) {
            r.error(got.error().what());
            continue;
        }
        std::string digest = h->hex();
        if (!d.sha256.empty() && digest != d.sha256) {
            r.error(fmt::format("{}: sha256 {} does not match the expected {}; file not written",
                                d.url, digest, d.sha256));
            continue;
        }
        if (d.sha256.empty() && *cur && **cur == body) {
            auto changed = ensure_file(ctx.root, d.path, body, mode, owner->uid, owner->gid);
            if (!changed)
                r.error(changed.error().what());
            else if (*changed)
                r.change("set mode/owner of " + d.path);
            continue;  // unchanged content: the temporary file is dropped
        }
        if (r.check(w->commit(mode, {owner->uid, owner->gid})))
            r.change(fmt::format("downloaded {} to {}", d.url, d.path));
    }
}

}  // namespace ballast::stages::modules
