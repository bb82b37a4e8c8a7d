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

// The new image, chunk by chunk, as the delta plan says: copied from the booted slot or fetched
// in the plan's ranges; every chunk's SHA-256 checked against the signed index before a byte of
// it is handed on. The writer then checks the whole image as for any source.
class DeltaReader {
  public:
    // `ranges_ignored` is set by `fetch` when the server answered a range with the whole blob
    // (a pull-through cache on a miss does): from then on the rest comes in one stream.
    DeltaReader(std::string where, ChunkIndex want, DeltaPlan plan, boot::SlotDevice seed,
                Fetch fetch, std::shared_ptr<std::atomic<bool>> ranges_ignored, SourceOptions o)
        : where_(std::move(where)),
          want_(std::move(want)),
          plan_(std::move(plan)),
          seed_(std::move(seed)),
          fetch_(std::move(fetch)),
          ranges_ignored_(std::move(ranges_ignored)),
          o_(std::move(o)),
          copy_from_(want_.chunks.size()) {
        for (const auto& c : plan_.copies)
            copy_from_[c.chunk] = c.from;
    }

    Result<size_t> read(uint8_t* buf, size_t n) {
        if (pos_ == chunk_.size()) {
            if (next_ == want_.chunks.size()) return size_t(0);
            BALLAST_TRY(load(next_++));
        }
        const size_t k = std::min(n, chunk_.size() - pos_);
        std::memcpy(buf, chunk_.data() + pos_, k);
        pos_ += k;
        return k;
    }

  private:
    Status load(size_t i) {
        const auto& c = want_.chunks[i];
        chunk_.resize(c.length);
        pos_ = 0;
        const char* from = "the registry";
        if (!whole_ && ranges_ignored_->load()) {
            spdlog::warn(
                "delta: the registry answers ranges with the whole image (a "
                "pull-through cache?); the rest of the image comes in one stream");
            whole_ = true;
            stream_ = std::make_unique<HttpStream>(where_, fetch_, c.offset,
                                                   want_.image_size - c.offset, o_);
        }
        if (whole_) {
            BALLAST_TRY(read_stream(chunk_.data(), c.length));
        } else if (copy_from_[i]) {
            from = "the booted slot";
            if (!seed_fd_) {
                seed_fd_ = UniqueFd(::open(seed_.path.c_str(), O_RDONLY | O_CLOEXEC));
                if (!seed_fd_) return fail_errno(errno, seed_.path);
            }
            const ssize_t r = ::pread(seed_fd_.get(), chunk_.data(), c.length,
                                      off_t(seed_.start + *copy_from_[i]));
            if (r != ssize_t(c.length)) return fail_errno(r < 0 ? errno : EIO, seed_.path);
        } else {
            // The fetch range holding chunk i: ranges and chunks both go in image order.
            while (range_ < plan_.fetches.size() &&
                   i >= plan_.fetches[range_].first + plan_.fetches[range_].count)
                ++range_;
            if (range_ == plan_.fetches.size() || i < plan_.fetches[range_].first)
                return fail(Errc::failed, "{}: chunk {} has no source in the plan", where_, i);
            const auto& f = plan_.fetches[range_];
            if (stream_range_ != range_) {
                stream_ = std::make_unique<HttpStream>(where_, fetch_, f.offset, f.length, o_);
                stream_range_ = range_;
                stream_pos_ = 0;
            }
            // Bytes of the range before this chunk (held chunks merged into it) are dropped, in
            // pieces: merging across the widest gaps can leave megabytes between two chunks.
            char skip[65536];
            while (stream_pos_ < c.offset - f.offset)
                BALLAST_TRY(read_stream(
                    skip,
                    size_t(std::min<uint64_t>(sizeof skip, c.offset - f.offset - stream_pos_))));
            BALLAST_TRY(read_stream(chunk_.data(), c.length));
        }
        const auto got = BALLAST_TRY(sha256_digest(std::string_view(chunk_.data(), chunk_.size())));
        if (got != c.sha256)
            return fail(Errc::verification,
                        "{}: chunk {} (bytes {}..{}) from {} does not match the signed chunk index",
                        where_, i, c.offset, c.offset + c.length, from);
        return {};
    }

    // Exactly `n` bytes of the current stream.
    Status read_stream(char* buf, size_t n) {
        for (size_t done = 0; done < n;) {
            const size_t got =
                BALLAST_TRY(stream_->read(reinterpret_cast<uint8_t*>(buf) + done, n - done));
            if (got == 0) return fail(Errc::io, "{}: a range ended early", where_);
            done += got;
            stream_pos_ += got;
        }
        return {};
    }

    std::string where_;
    ChunkIndex want_;
    DeltaPlan plan_;
    boot::SlotDevice seed_;
    Fetch fetch_;
    std::shared_ptr<std::atomic<bool>> ranges_ignored_;
    SourceOptions o_;
    std::vector<std::optional<uint64_t>> copy_from_;
    UniqueFd seed_fd_;
    std::unique_ptr<HttpStream> stream_;
    size_t range_ = 0, stream_range_ = SIZE_MAX;
    uint64_t stream_pos_ = 0;  // bytes read of the current stream
    bool whole_ = false;       // the rest of the image from one stream
    std::string chunk_;        // the current chunk, checked
    size_t pos_ = 0, next_ = 0;
};

// The chunks the booted slot holds: its squashfs image (its superblock says how long), chunked
// as the new index was. Nothing (no seed) when the slot holds no squashfs.
std::optional<ChunkIndex> seed_index(const boot::SlotDevice& seed, const ChunkParams& p) {
    UniqueFd fd(::open(seed.path.c_str(), O_RDONLY | O_CLOEXEC));
    uint8_t sb[48];
    if (!fd || ::pread(fd.get(), sb, sizeof sb, off_t(seed.start)) != ssize_t(sizeof sb) ||
        std::memcmp(sb, "hsqs", 4) != 0)
        return std::nullopt;
    uint64_t used = 0;
    for (int i = 7; i >= 0; --i)
        used = (used << 8) | sb[40 + i];
    // mksquashfs pads the file to 4 KiB, and the published image was chunked with the padding.
    const uint64_t length = std::min<uint64_t>((used + 4095) / 4096 * 4096, seed.size);
    if (used == 0) return std::nullopt;
    auto idx = index_file(seed.path, seed.start, length, p);
    if (!idx) {
        spdlog::warn("delta: indexing the booted slot: {}", idx.error().what());
        return std::nullopt;
    }
    return std::move(*idx);
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
    auto ranges_ignored = std::make_shared<std::atomic<bool>>(false);
    Fetch fetch = [client, image, ranges_ignored](
                      uint64_t from, uint64_t length,
                      const std::function<Status(std::span<const char>)>& sink) -> Status {
        http::Request get;
        get.range_from = from;
        get.range_length = length;
        const auto reply = BALLAST_TRY(client->call("blobs/" + image.digest, get, false, sink));
        // The bytes were cut to the range (http::request), but the whole blob came down.
        if (reply.status == 200 && (from > 0 || length < image.size)) ranges_ignored->store(true);
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
    // A delta: the signed index, the booted slot's chunks, and a plan of what to fetch.
    if (!m.index || !o.seed) return out;
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
    // The booted slot is read and planned against only when the image is about to be written:
    // a re-run that finds the version already booted, or a refused bundle, costs no slot read.
    auto planned = std::make_shared<uint64_t>(m.image.size);
    out.download_bytes = planned;
    out.open_image = [where, fetch, full = out.open_image, want = std::move(want),
                      size = m.image.size, seed = *o.seed, ranges_ignored, planned,
                      o]() -> Result<ImageReader> {
        const auto have = seed_index(seed, want.params);
        if (!have) {
            spdlog::info(
                "delta: the booted slot holds no squashfs to reuse; fetching the whole "
                "image");
            return full();
        }
        const Seed seeds[] = {{&*have, false}};
        auto plan = plan_delta(want, seeds);
        if (plan.full) {
            spdlog::info("delta: {} of {} bytes would be fetched; fetching the whole image instead",
                         plan.fetch_bytes, size);
            return full();
        }
        spdlog::info("delta: fetching {} of {} bytes in {} requests, {} bytes from the booted slot",
                     plan.fetch_bytes, size, plan.fetches.size(), plan.copy_bytes);
        *planned = plan.fetch_bytes;
        auto reader = std::make_shared<DeltaReader>(where, want, std::move(plan), seed, fetch,
                                                    ranges_ignored, o);
        return ImageReader([reader](uint8_t* buf, size_t n) { return reader->read(buf, n); });
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
