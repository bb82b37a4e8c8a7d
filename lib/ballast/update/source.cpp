#include "ballast/update/source.hpp"
#include "ballast/core/text.hpp"

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

// Bytes [start, start+length) of a URL, downloaded on a thread and handed to the reader in
// order. A failed attempt resumes where the last one stopped.
class HttpStream {
  public:
    HttpStream(std::string url, uint64_t start, uint64_t length, SourceOptions o)
        : url_(std::move(url)), start_(start), length_(length), o_(std::move(o)) {
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
            http::Options h = o_.http;
            h.resume_from = start_ + received;
            h.range_length = length_ - received;
            const uint64_t before = received;
            auto r = http::get(url_, h, [&](std::span<const char> d) -> Status {
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
    out.open_image = [url, img, o]() -> Result<ImageReader> {
        auto stream = std::make_shared<HttpStream>(url, img.offset, img.size, o);
        return ImageReader([stream](uint8_t* buf, size_t n) { return stream->read(buf, n); });
    };
    return out;
}

}  // namespace

bool is_url(const std::string& source) {
    return is_http_url(source);
}

Result<OpenedSource> open_source(const std::string& source, const SourceOptions& o) {
    if (source.rfind("http://", 0) == 0)
        return fail(Errc::invalid_argument,
                    "{}: plain http is refused; bundles are fetched over https only", source);
    return is_url(source) ? open_remote(source, o) : open_local(source, o);
}

}  // namespace ballast::update
