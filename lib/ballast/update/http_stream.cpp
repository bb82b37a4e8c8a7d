#include "ballast/update/http_stream.hpp"

#include <algorithm>
#include <cstring>

#include <spdlog/spdlog.h>

namespace ballast::update {

bool transient(const Error& e) {
    return e.code() == Errc::io || e.code() == Errc::timeout || e.code() == Errc::unavailable;
}

HttpStream::HttpStream(std::string what, Fetch fetch, uint64_t start, uint64_t length,
                       RetryPolicy retry, size_t max_buffered)
    : what_(std::move(what)),
      fetch_(std::move(fetch)),
      start_(start),
      length_(length),
      retry_(retry),
      max_buffered_(max_buffered) {
    thread_ = std::thread([this] { download(); });
}

HttpStream::~HttpStream() {
    {
        std::lock_guard l(m_);
        stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
}

Result<size_t> HttpStream::read(uint8_t* buf, size_t n) {
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

void HttpStream::download() {
    uint64_t received = 0;
    int failures = 0;
    auto wait = retry_.backoff;
    std::optional<Error> last;
    while (received < length_) {
        const uint64_t before = received;
        auto r =
            fetch_(start_ + received, length_ - received, [&](std::span<const char> d) -> Status {
                std::unique_lock l(m_);
                cv_.wait(l, [&] { return buffered_ < max_buffered_ || stop_; });
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
            last = Error(Errc::io, fmt::format("{}: the server closed the transfer after {} of {} "
                                               "bytes",
                                               what_, received, length_));
        } else {
            last = r.error();
            if (!transient(*last)) break;
        }
        if (received > before) {
            failures = 0;
            wait = retry_.backoff;
        }
        if (++failures > retry_.retries) break;
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

}  // namespace ballast::update
