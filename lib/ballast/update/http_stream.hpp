// A remote object's bytes as a stream: one request at a time through a `Fetch` (an https URL, a
// registry blob), downloaded on a thread ahead of the reader, resumed with a range request from
// the last byte received after a dropped connection (bounded retries, doubling backoff).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "ballast/core/result.hpp"

namespace ballast::update {

// Bytes [from, from+length) of a remote object into `sink`, in one request; returns when the
// request ends, whatever it delivered.
using Fetch = std::function<Status(uint64_t from, uint64_t length,
                                   const std::function<Status(std::span<const char>)>& sink)>;

struct RetryPolicy {
    // Consecutive failed attempts (no byte received) before a download gives up, and the first
    // wait between them (doubled each time, at most 30 s).
    int retries = 6;
    std::chrono::milliseconds backoff{1000};
};

// A failure worth another attempt (the network, the server), rather than a refusal.
[[nodiscard]] bool transient(const Error& e);

// Bytes [start, start+length) of a remote object, handed to the reader in order.
class HttpStream {
  public:
    // At most `max_buffered` bytes are held ahead of the reader.
    HttpStream(std::string what, Fetch fetch, uint64_t start, uint64_t length, RetryPolicy retry,
               size_t max_buffered = 16u << 20);
    ~HttpStream();
    HttpStream(const HttpStream&) = delete;
    HttpStream& operator=(const HttpStream&) = delete;

    // Fills up to n bytes; 0 only at the end; an error once the retries are spent.
    [[nodiscard]] Result<size_t> read(uint8_t* buf, size_t n);

  private:
    void download();

    std::string what_;
    Fetch fetch_;
    uint64_t start_, length_;
    RetryPolicy retry_;
    size_t max_buffered_;
    std::mutex m_;
    std::condition_variable cv_;
    std::deque<std::vector<char>> chunks_;
    size_t front_used_ = 0, buffered_ = 0;
    bool done_ = false, stop_ = false;
    std::optional<Error> error_;
    std::thread thread_;
};

}  // namespace ballast::update
