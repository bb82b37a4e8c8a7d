// HTTP(S) GET through libcurl, loaded with dlopen() on first use: the daemon's idle footprint
// does not pay for libcurl and its dozen dependencies (docs/performance.md) until it downloads.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "ballast/core/result.hpp"

namespace ballast::http {

struct Options {
    std::string ca_file;    // PEM bundle to trust instead of the system store
    std::string proxy;      // empty: libcurl's environment handling (https_proxy, no_proxy)
    bool no_proxy = false;  // never through a proxy (link-local metadata services)
    // Bind the local end to a port in [local_port, local_port + local_port_range) (Scaleway's
    // metadata service answers user-data only to privileged source ports); 0: any.
    int local_port = 0, local_port_range = 0;
    // PEM text, for APIs that authenticate with certificates (kubeconfig credentials): the CA
    // to trust instead of ca_file and the system store, and a client certificate and key.
    std::string ca_pem, client_cert_pem, client_key_pem;
    // Another method than GET, with this body (e.g. "PATCH", application/merge-patch+json).
    std::string method, body, content_type;
    std::chrono::seconds connect_timeout{20};
    std::chrono::seconds timeout{0};  // whole transfer; 0: none (low-speed limit still applies)
    uint64_t max_size = 0;            // refuse bodies larger than this; 0: no limit
    // Range: bytes=resume_from-(resume_from+range_length-1); range_length 0: to the end.
    // A server that ignores the range (status 200) is handled here: the bytes before
    // `resume_from` are dropped and the transfer stops after `range_length` bytes.
    uint64_t resume_from = 0;
    uint64_t range_length = 0;
};

struct Response {
    long status = 0;
    uint64_t bytes = 0;  // delivered to the sink
    uint64_t total = 0;  // the whole resource's size when the server said (Content-Range/-Length)
};

// Streams the body to `sink` (which may fail the transfer). HTTP status >= 400 is an error
// naming the status; TLS is always verified.
[[nodiscard]] Result<Response> get(const std::string& url, const Options& opts,
                                   const std::function<Status(std::span<const char>)>& sink);

// A request whose answer the caller reads whatever its status (registry APIs: a 401 carries the
// challenge, a 202 the upload's Location), with headers both ways and a streamed upload.
struct Request {
    std::string method = "GET";        // "HEAD" sends no body back
    std::vector<std::string> headers;  // "Name: value"
    // The body: `body`, or `upload_size` bytes from `upload(buf, n)` (streamed: a slot image
    // does not fit in memory), which returns the bytes it put in `buf` (0 only at the end).
    std::string body;
    std::function<Result<size_t>(char* buf, size_t n)> upload;
    uint64_t upload_size = 0;
    // libcurl never sends a custom Authorization header to another host on a redirect.
    bool follow_redirects = true;
    // A range of the body, as Options::resume_from and range_length (a 200 that ignores the
    // range is cut to it here too).
    uint64_t range_from = 0, range_length = 0;
    // The most a body kept in Reply::body may hold (no sink, or an error document); 0: 64 KiB.
    uint64_t max_body = 0;
};

struct Reply {
    long status = 0;
    // The final response's headers, names in lower case (the last one of a repeated name).
    std::map<std::string, std::string> headers;
    // The body when no sink is given, or when the status is not 2xx (bounded by
    // Request::max_body). A sink's bytes are bounded by Options::max_size only.
    std::string body;
    uint64_t bytes = 0;  // delivered to the sink
};

// Transport failures (DNS, TLS, timeouts, a sink's error) are errors; any HTTP status is a Reply.
[[nodiscard]] Result<Reply> request(const std::string& url, const Options& opts, const Request& req,
                                    const std::function<Status(std::span<const char>)>& sink = {});

// `text` with every URL's credentials ("user:pass@") and query string ("?X-Amz-Signature=...")
// replaced by "***": for messages anyone may read (status, node annotations).
[[nodiscard]] std::string redact(std::string_view text);

// Whole body into memory (small documents: keys, configs).
[[nodiscard]] Result<std::string> get_string(const std::string& url, const Options& opts);

}  // namespace ballast::http
