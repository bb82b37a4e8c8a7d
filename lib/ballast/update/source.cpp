#include "ballast/update/source.hpp"
#include "ballast/core/atomic_file.hpp"
#include "ballast/core/sha256.hpp"
#include "ballast/core/text.hpp"
#include "ballast/update/artifact.hpp"
#include "ballast/update/registry.hpp"

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

constexpr uint64_t kPrefix = 64 * 1024;     // holds the tar headers, manifest and signature
constexpr size_t kMaxBuffered = 16u << 20;  // between the download and the slot writer

bool transient(const Error& e) {
    return e.code() == Errc::io || e.code() == Errc::timeout || e.code() == Errc::unavailable;
}

// Bytes [from, from+length) of a remote object into `sink`, in one request (an https URL, a
// registry blob); returns when the request ends, whatever it delivered.
using Fetch = std::function<Status(uint64_t from, uint64_t length,
                                   const std::function<Status(std::span<const char>)>& sink)>;

// Bytes [start, start+length) of a remote object, downloaded on a thread and handed to the
// reader in order. A failed attempt resumes where the last one stopped.
class HttpStream {
  public:
    HttpStream(std::string what, Fetch fetch, uint64_t start, uint64_t length, SourceOptions o)
        : url_(std::move(what)),
          fetch_(std::move(fetch)),
          start_(start),
          length_(length),
          o_(std::move(o)) {
        thread_ = std::thread([this] { download(); });
    }
    ~HttpStream() {
        {
            std::lock_guard l(m_);
            stop_ = true;
        }
        cv_.notify_all();
        thread_.join();
    }
    HttpStream(const HttpStream&) = delete;
    HttpStream& operator=(const HttpStream&) = delete;

    Result<size_t> read(uint8_t* buf, size_t n) {
        std::unique_lock l(m_);
        cv_.wait(l, [&] { return !chunks_.empty() || done_; });
        if (chunks_.empty()) {
            if (error_) return std::unexpected(*error_);
            return size_t(0);
        }
        size_t got = 0;
        while (got < n && !chunks_.empty()) {
            auto& c = chunks_.front();
            size_t k = std::min(n - got, c.size() - front_used_);
            std::memcpy(buf + got, c.data() + front_used_, k);
            got += k;
            front_used_ += k;
            if (front_used_ == c.size()) {
                buffered_ -= c.size();
                chunks_.pop_front();
                front_used_ = 0;
            }
        }
        cv_.notify_all();
        return got;
    }

  private:
    void download() {
        uint64_t received = 0;
        int failures = 0;
        auto wait = o_.backoff;
        std::optional<Error> last;
        while (received < length_) {
            const uint64_t before = received;
            auto r = fetch_(start_ + received, length_ - received,
                            [&](std::span<const char> d) -> Status {
                                std::unique_lock l(m_);
                                cv_.wait(l, [&] { return buffered_ < kMaxBuffered || stop_; });
                                if (stop_) return fail(Errc::cancelled, "download stopped");
                                chunks_.emplace_back(d.begin(), d.end());
                                buffered_ += d.size();
                                received += d.size();
                                cv_.notify_all();
                                return {};
                            });
            if (r && received >= length_) break;
            {
                std::lock_guard l(m_);
                if (stop_) break;
            }
            if (r) {
                last = Error(Errc::io, fmt::format("{}: the server closed the transfer after {} "
                                                   "of {} bytes",
                                                   url_, received, length_));
            } else {
                last = r.error();
                if (!transient(*last)) break;
            }
            if (received > before) {
                failures = 0;
                wait = o_.backoff;
            }
            if (++failures > o_.retries) break;
            spdlog::warn("download: {}; resuming at byte {} in {} ms", last->what(), received,
                         wait.count());
            std::unique_lock l(m_);
            if (cv_.wait_for(l, wait, [&] { return stop_; })) break;
            wait = std::min<std::chrono::milliseconds>(wait * 2, std::chrono::seconds(30));
        }
        std::lock_guard l(m_);
        if (received < length_ && !stop_)
            error_ = last ? std::move(*last).context(
                                fmt::format("download ({} of {} bytes)", received, length_))
                          : Error(Errc::io, "download stopped");
        done_ = true;
        cv_.notify_all();
    }

    std::string url_;
    Fetch fetch_;
    uint64_t start_, length_;
    SourceOptions o_;
    std::mutex m_;
    std::condition_variable cv_;
    std::deque<std::vector<char>> chunks_;
    size_t front_used_ = 0, buffered_ = 0;
    bool done_ = false, stop_ = false;
    std::optional<Error> error_;
    std::thread thread_;
};

Result<OpenedSource> open_local(const std::string& source, const SourceOptions& o) {
    auto bundle = BALLAST_TRY(Bundle::open(source));
    OpenedSource out;
    out.where = source;
    out.checked = BALLAST_TRY(check_bundle(bundle, o.keyring));
    const auto img = out.checked.image;
    out.open_image = [img]() { return file_reader(img.path, img.offset, img.size); };
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
        if (!transient(r.error()) || attempt >= o.retries)
            return std::unexpected(std::move(r.error()).context("bundle"));
        std::this_thread::sleep_for(o.backoff);
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
    Fetch fetch = [url, o](uint64_t from, uint64_t length,
                           const std::function<Status(std::span<const char>)>& sink) -> Status {
        http::Options range = o.http;
        range.resume_from = from;
        range.range_length = length;
        BALLAST_TRY(http::get(url, range, sink));
        return {};
    };
    out.open_image = [url, fetch, img, o]() -> Result<ImageReader> {
        auto stream = std::make_shared<HttpStream>(url, fetch, img.offset, img.size, o);
        return ImageReader([stream](uint8_t* buf, size_t n) { return stream->read(buf, n); });
    };
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
    if (m.index) {
        const auto idx = layer(m.index->file);
        if (!idx || idx->digest != "sha256:" + m.index->sha256 || idx->size != m.index->size)
            return fail(Errc::verification,
                        "{}: the chunk index layer does not match the signed manifest's", where);
    }
    Fetch fetch = [client, image](
                      uint64_t from, uint64_t length,
                      const std::function<Status(std::span<const char>)>& sink) -> Status {
        http::Request get;
        get.range_from = from;
        get.range_length = length;
        const auto reply = BALLAST_TRY(client->call("blobs/" + image.digest, get, false, sink));
        if (reply.status != 206 && reply.status != 200)
            return fail(reply.status == 404 ? Errc::not_found : Errc::unavailable,
                        "{}: blob {}: HTTP {}", client->reference().registry, image.digest,
                        reply.status);
        return {};
    };
    out.open_image = [where, fetch, image, o]() -> Result<ImageReader> {
        auto stream = std::make_shared<HttpStream>(where, fetch, 0, image.size, o);
        return ImageReader([stream](uint8_t* buf, size_t n) { return stream->read(buf, n); });
    };
    return out;
}

}  // namespace

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
