#include "ballast/update/source.hpp"
#include "ballast/core/atomic_file.hpp"
#include "ballast/core/fd.hpp"
#include "ballast/core/sha256.hpp"
#include "ballast/core/text.hpp"
#include "ballast/update/artifact.hpp"
#include "ballast/update/chunk_index.hpp"
#include "ballast/update/delta_plan.hpp"
#include "ballast/update/registry.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

namespace ballast::update {
namespace {

constexpr uint64_t kPrefix = 64 * 1024;  // holds the tar headers, manifest and signature
// Counts what `fetch` delivers into the source's meter.
Fetch metered(Fetch fetch, std::shared_ptr<DownloadMeter> meter) {
    return [fetch = std::move(fetch), meter = std::move(meter)](
               uint64_t from, uint64_t length,
               const std::function<Status(std::span<const char>)>& sink) -> Status {
        return fetch(from, length, [&](std::span<const char> d) -> Status {
            meter->done += d.size();
            return sink(d);
        });
    };
}

// The plan of a source that is read whole.
std::function<Result<DownloadPlan>(const Holdings&)> whole_plan(uint64_t size, bool remote,
                                                                std::string why) {
    return [size, remote, why = std::move(why)](const Holdings&) -> Result<DownloadPlan> {
        DownloadPlan p;
        p.image = size;
        p.fetch = remote ? size : 0;
        p.why = why;
        return p;
    };
}

Result<OpenedSource> open_local(const std::string& source, const SourceOptions& o) {
    auto bundle = BALLAST_TRY(Bundle::open(source));
    OpenedSource out;
    out.where = source;
    out.checked = BALLAST_TRY(check_bundle(bundle, o.keyring));
    const auto img = out.checked.image;
    out.open_image = [img]() { return file_reader(img.path, img.offset, img.size); };
    out.plan = whole_plan(img.size, false, "a local bundle");
    return out;
}

Result<OpenedSource> open_remote(const std::string& url, const SourceOptions& o) {
    // The first bytes: tar headers, manifest, signature, the image's header.
    std::string prefix;
    http::Options h = o.http;
    h.resume_from = 0;
    h.range_length = kPrefix;
    http::Response resp;
    for (int attempt = 0;; ++attempt) {
        prefix.clear();
        auto r = http::get(url, h, [&](std::span<const char> d) -> Status {
            prefix.append(d.data(), d.size());
            return {};
        });
        if (r) {
            resp = *r;
            break;
        }
        if (!transient(r.error()) || attempt >= o.retry.retries)
            return std::unexpected(std::move(r.error()).context("bundle"));
        std::this_thread::sleep_for(o.retry.backoff);
    }
    const uint64_t total = resp.total ? resp.total : prefix.size();
    auto members =
        BALLAST_TRY(parse_tar(url, url, total, [&](uint64_t off, char* hdr) -> Result<bool> {
            if (off + 512 > prefix.size()) return false;
            std::memcpy(hdr, prefix.data() + off, 512);
            return true;
        }));
    auto small = [&](const char* name) -> Result<std::optional<std::string>> {
        auto it = members.find(name);
        if (it == members.end()) return std::optional<std::string>();
        if (it->second.offset + it->second.size > prefix.size())
            return fail(Errc::invalid_argument, "{}: {} does not lie in the bundle's first {} KiB",
                        url, name, kPrefix / 1024);
        return std::optional<std::string>(prefix.substr(it->second.offset, it->second.size));
    };
    auto manifest = BALLAST_TRY(small(kManifestName));
    auto sig = BALLAST_TRY(small(kSignatureName));
    OpenedSource out;
    out.where = url;
    out.remote = true;
    out.checked = BALLAST_TRY(check_parts(
        url, manifest, sig,
        [&](const std::string& n) -> std::optional<Bundle::Member> {
            auto it = members.find(n);
            if (it == members.end()) return std::nullopt;
            return it->second;
        },
        o.keyring));
    const auto img = out.checked.image;
    Fetch fetch = metered(
        [url, http = o.http](uint64_t from, uint64_t length,
                             const std::function<Status(std::span<const char>)>& sink) -> Status {
            http::Options range = http;
            range.resume_from = from;
            range.range_length = length;
            BALLAST_TRY(http::get(url, range, sink));
            return {};
        },
        out.meter);
    out.open_image = [url, fetch, img, retry = o.retry]() -> Result<ImageReader> {
        auto stream = std::make_shared<HttpStream>(url, fetch, img.offset, img.size, retry);
        return ImageReader([stream](uint8_t* buf, size_t n) { return stream->read(buf, n); });
    };
    out.plan = whole_plan(img.size, true, "an https bundle is fetched whole");
    return out;
}

// The artifact's small blobs (manifest, signature) whole, checked against their digests.
Result<std::string> small_blob(oci::Client& client, const oci::Descriptor& d) {
    if (d.size > (1u << 20))
        return fail(Errc::invalid_argument, "{} is {} bytes in the registry, more than 1 MiB",
                    d.title, d.size);
    http::Request get;
    get.max_body = 1u << 20;
    auto r = BALLAST_TRY_CTX(client.call("blobs/" + d.digest, get), "{}", d.title);
    if (r.status != 200)
        return fail(Errc::unavailable, "{}: fetching {}: HTTP {}", client.reference().registry,
                    d.title, r.status);
    if (r.body.size() != d.size || "sha256:" + BALLAST_TRY(sha256_hex(r.body)) != d.digest)
        return fail(Errc::verification, "{}: the registry sent a {} that does not match its digest",
                    client.reference().registry, d.title);
    return std::move(r.body);
}

Result<OpenedSource> open_oci(const std::string& source, const SourceOptions& o) {
    const auto ref = BALLAST_TRY(oci::parse_reference(source));
    std::optional<oci::Credential> cred;
    if (!o.registry_auth.empty()) {
        const auto text = BALLAST_TRY(read_file(o.registry_auth, 1u << 20));
        cred = oci::find_credential(BALLAST_TRY(oci::parse_auths(text, o.registry_auth)), ref);
    }
    auto client = std::make_shared<oci::Client>(ref, cred, o.http);

    // The tag is resolved once; everything after goes by digest.
    http::Request req;
    req.headers = {std::string("Accept: ") + oci::kImageManifestType};
    req.max_body = 4u << 20;  // distribution's own limit for manifests
    const std::string wanted = ref.digest.empty() ? ref.tag : ref.digest;
    auto r = BALLAST_TRY(client->call("manifests/" + wanted, req));
    if (r.status == 404)
        return fail(Errc::not_found, "{}: no such tag or manifest in the registry", ref.str());
    if (r.status != 200)
        return fail(Errc::unavailable, "{}: fetching the manifest: HTTP {}", ref.str(), r.status);
    const std::string digest = "sha256:" + BALLAST_TRY(sha256_hex(r.body));
    if (!ref.digest.empty() && digest != ref.digest)
        return fail(Errc::verification,
                    "{}: the registry sent a manifest whose digest is {}, not the one asked for",
                    ref.str(), digest);
    const auto layers = BALLAST_TRY_CTX(oci::parse_artifact_manifest(r.body), "{}", ref.str());
    auto layer = [&](const std::string& title) -> std::optional<oci::Descriptor> {
        for (const auto& l : layers)
            if (l.title == title) return l;
        return std::nullopt;
    };
    const std::string where = fmt::format("oci://{}/{}@{}", ref.registry, ref.repository, digest);
    std::optional<std::string> manifest, sig;
    if (auto l = layer(kManifestName)) manifest = BALLAST_TRY(small_blob(*client, *l));
    if (auto l = layer(kSignatureName)) sig = BALLAST_TRY(small_blob(*client, *l));
    OpenedSource out;
    out.where = where;
    out.remote = true;
    // From here the signed manifest is the root of trust.
    out.checked = BALLAST_TRY(check_parts(
        where, manifest, sig,
        [&](const std::string& n) -> std::optional<Bundle::Member> {
            auto l = layer(n);
            if (!l) return std::nullopt;
            return Bundle::Member{"blobs/" + l->digest, 0, l->size};
        },
        o.keyring));
    const auto& m = out.checked.manifest;
    const auto image = *layer(m.image.file);
    if (image.digest != "sha256:" + m.image.sha256)
        return fail(Errc::verification, "{}: the image layer is {}, the signed manifest says {}",
                    where, image.digest, m.image.sha256);
    for (const auto& [what, pinned] : {std::pair{"chunk index", m.index}, {"UKI", m.uki}}) {
        if (!pinned) continue;
        const auto l = layer(pinned->file);
        if (!l || l->digest != "sha256:" + pinned->sha256 || l->size != pinned->size)
            return fail(Errc::verification, "{}: the {} layer does not match the signed manifest's",
                        where, what);
    }
    auto ranges = std::make_shared<RangeSupport>();
    Fetch fetch = metered(
        [client, image, ranges](
            uint64_t from, uint64_t length,
            const std::function<Status(std::span<const char>)>& sink) -> Status {
            // The whole blob is a plain GET (what a cache that does no ranges answers anyway);
            // anything less, a single range.
            const bool ranged = from > 0 || length < image.size;
            http::Request get;
            if (ranged) {
                get.range_from = from;
                get.range_length = length;
            }
            const auto reply = BALLAST_TRY(client->call("blobs/" + image.digest, get, false, sink));
            // The bytes were cut to the range (http::request), but the whole blob came down.
            if (reply.status == 206 && ranged) ranges->honoured.store(true);
            if (reply.status == 200 && ranged) ranges->ignored.store(true);
            if ((reply.status == 416 || reply.status == 501) && ranged) {
                ranges->ignored.store(true);
                return fail(Errc::unsupported,
                            "{}: blob {}: HTTP {} to a range request (bytes {}..{}): the registry "
                            "does no ranges, or holds a blob shorter than its digest's",
                            client->reference().registry, image.digest, reply.status, from,
                            from + length);
            }
            if (reply.status != 206 && reply.status != 200)
                return fail(reply.status == 404 ? Errc::not_found : Errc::unavailable,
                            "{}: blob {}: HTTP {}", client->reference().registry, image.digest,
                            reply.status);
            return {};
        },
        out.meter);
    auto whole = [where, fetch, image, retry = o.retry]() -> Result<ImageReader> {
        auto stream = std::make_shared<HttpStream>(where, fetch, 0, image.size, retry);
        return ImageReader([stream](uint8_t* buf, size_t n) { return stream->read(buf, n); });
    };
    out.open_image = whole;
    if (!m.index) {
        out.plan = whole_plan(image.size, true, "the artifact has no chunk index");
        return out;
    }
    // The signed index: checked here, with the rest of the bundle; the slots are read and
    // planned against only when asked (a re-run that finds the version already booted, or a
    // refused bundle, costs no slot read).
    const auto idx_layer = *layer(m.index->file);
    http::Request get;
    get.max_body = kMaxIndexSize;
    auto ir = BALLAST_TRY_CTX(client->call("blobs/" + idx_layer.digest, get), "chunk index");
    if (ir.status != 200 || "sha256:" + BALLAST_TRY(sha256_hex(ir.body)) != idx_layer.digest)
        return fail(Errc::verification,
                    "{}: the registry sent a chunk index that does not match "
                    "the signed manifest (HTTP {})",
                    where, ir.status);
    auto want = BALLAST_TRY(parse_index(ir.body, where + " " + m.index->file));
    if (want.image_size != m.image.size)
        return fail(Errc::verification, "{}: the chunk index describes {} bytes, the image is {}",
                    where, want.image_size, m.image.size);
    out.checked.index = want;
    // What open_image follows: set by the last plan.
    auto chosen = std::make_shared<std::function<Result<ImageReader>()>>(whole);
    out.open_image = [chosen]() { return (*chosen)(); };
    out.plan = [where, fetch, whole, want = std::move(want), ranges, chosen,
                retry = o.retry](const Holdings& h) -> Result<DownloadPlan> {
        DownloadPlan p;
        p.image = p.fetch = want.image_size;
        *chosen = whole;
        if (!h.booted && !h.target) {
            p.why = "the node holds no slot to reuse";
            return p;
        }
        auto d = std::make_shared<PreparedDelta>(BALLAST_TRY(prepare_delta(want, h)));
        const auto& plan = d->plan;
        if (plan.full) {
            p.why = fmt::format("a delta would fetch {} of {} bytes", plan.fetch_bytes,
                                want.image_size);
            return p;
        }
        p.delta = true;
        p.fetch = plan.fetch_bytes;
        p.requests = plan.fetches.size();
        p.copy = plan.copy_bytes;
        p.in_place = plan.in_place_bytes;
        *chosen = [d, h,
                   remote = DeltaRemote{where, fetch, ranges, retry}]() -> Result<ImageReader> {
            return delta_reader(d, h, remote);
        };
        return p;
    };
    return out;
}

}  // namespace

std::string describe(const DownloadPlan& p) {
    if (p.fetch == 0)
        return p.delta ? fmt::format("nothing to download: all {} bytes are held here", p.image)
                       : "nothing to download (a local bundle)";
    if (!p.delta) return fmt::format("{} bytes to download, the whole image ({})", p.fetch, p.why);
    return fmt::format(
        "{} of {} bytes to download in {} range requests; {} bytes copied from the booted slot, "
        "{} already in place",
        p.fetch, p.image, p.requests, p.copy, p.in_place);
}

bool is_url(const std::string& source) {
    return is_http_url(source) || source.rfind("oci://", 0) == 0;
}

Result<OpenedSource> open_source(const std::string& source, const SourceOptions& o) {
    if (source.rfind("http://", 0) == 0)
        return fail(Errc::invalid_argument,
                    "{}: plain http is refused; bundles are fetched over https only", source);
    if (source.rfind("oci://", 0) == 0) return open_oci(source, o);
    return is_url(source) ? open_remote(source, o) : open_local(source, o);
}

}  // namespace ballast::update
