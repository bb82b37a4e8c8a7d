#include "ballast/system/http.hpp"

#include <curl/curl.h>
#include <dlfcn.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <mutex>
#include <optional>

namespace ballast::http {
namespace {

struct Curl {
    decltype(&curl_global_init) global_init;
    decltype(&curl_easy_init) easy_init;
    CURLcode (*easy_setopt)(CURL*, CURLoption, ...);
    decltype(&curl_easy_perform) easy_perform;
    decltype(&curl_easy_cleanup) easy_cleanup;
    CURLcode (*easy_getinfo)(CURL*, CURLINFO, ...);
    decltype(&curl_easy_strerror) easy_strerror;
    decltype(&curl_slist_append) slist_append;
    decltype(&curl_slist_free_all) slist_free_all;
};

Result<const Curl*> load_curl() {
    static std::once_flag once;
    static Curl curl{};
    static std::string error;
    std::call_once(once, [] {
        void* h = ::dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            error = std::string("cannot load libcurl.so.4 (install libcurl4): ") + ::dlerror();
            return;
        }
        auto sym = [&](const char* name) { return ::dlsym(h, name); };
        curl.global_init = reinterpret_cast<decltype(curl.global_init)>(sym("curl_global_init"));
        curl.easy_init = reinterpret_cast<decltype(curl.easy_init)>(sym("curl_easy_init"));
        curl.easy_setopt = reinterpret_cast<decltype(curl.easy_setopt)>(sym("curl_easy_setopt"));
        curl.easy_perform = reinterpret_cast<decltype(curl.easy_perform)>(sym("curl_easy_perform"));
        curl.easy_cleanup = reinterpret_cast<decltype(curl.easy_cleanup)>(sym("curl_easy_cleanup"));
        curl.easy_getinfo = reinterpret_cast<decltype(curl.easy_getinfo)>(sym("curl_easy_getinfo"));
        curl.easy_strerror =
            reinterpret_cast<decltype(curl.easy_strerror)>(sym("curl_easy_strerror"));
        curl.slist_append = reinterpret_cast<decltype(curl.slist_append)>(sym("curl_slist_append"));
        curl.slist_free_all =
            reinterpret_cast<decltype(curl.slist_free_all)>(sym("curl_slist_free_all"));
        if (!curl.global_init || !curl.easy_init || !curl.easy_setopt || !curl.easy_perform ||
            !curl.easy_cleanup || !curl.easy_getinfo || !curl.easy_strerror || !curl.slist_append ||
            !curl.slist_free_all) {
            error = "libcurl.so.4 lacks a needed symbol";
            curl.easy_init = nullptr;
            return;
        }
        curl.global_init(CURL_GLOBAL_DEFAULT);
    });
    if (!curl.easy_init) return fail(Errc::unsupported, "{}", error);
    return &curl;
}

struct Transfer {
    const std::function<Status(std::span<const char>)>* sink;
    uint64_t max_size;
    uint64_t skip = 0;   // bytes still to drop (a server that ignored the range)
    uint64_t limit = 0;  // stop after this many bytes; 0: no limit
    uint64_t bytes = 0;
    uint64_t total = 0;
    long status = 0;
    bool complete = false;  // the limit was reached: the transfer was stopped on purpose
    std::optional<Error> error;
    std::map<std::string, std::string>* headers = nullptr;  // request(): the final response's
    std::string* error_body = nullptr;  // request(): a non-2xx body, or the body without a sink
    uint64_t error_body_max = 0;
    bool body_to_sink = true;
};

uint64_t parse_u64(std::string_view s) {
    uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') break;
        v = v * 10 + uint64_t(c - '0');
    }
    return v;
}

// Content-Range: bytes A-B/TOTAL, Content-Length: N (the total of a 200 response).
size_t on_header(char* ptr, size_t size, size_t n, void* user) {
    auto* t = static_cast<Transfer*>(user);
    std::string_view h(ptr, size * n);
    if (h.rfind("HTTP/", 0) == 0) {
        auto sp = h.find(' ');
        t->status = sp == std::string_view::npos ? 0 : long(parse_u64(h.substr(sp + 1)));
        t->total = 0;
        if (t->headers) t->headers->clear();
        return size * n;
    }
    if (t->headers) {
        const auto colon = h.find(':');
        if (colon != std::string_view::npos) {
            std::string name(h.substr(0, colon));
            for (auto& ch : name)
                ch = char(std::tolower(static_cast<unsigned char>(ch)));
            auto v = h.substr(colon + 1);
            while (!v.empty() && (v.front() == ' ' || v.front() == '\t'))
                v.remove_prefix(1);
            while (!v.empty() && (v.back() == '\r' || v.back() == '\n' || v.back() == ' '))
                v.remove_suffix(1);
            (*t->headers)[name] = std::string(v);
        }
    }
    auto starts = [&](std::string_view k) {
        if (h.size() < k.size()) return false;
        for (size_t i = 0; i < k.size(); ++i)
            if (std::tolower(static_cast<unsigned char>(h[i])) != k[i]) return false;
        return true;
    };
    if (starts("content-range:")) {
        auto slash = h.find('/');
        if (slash != std::string_view::npos) t->total = parse_u64(h.substr(slash + 1));
    } else if (starts("content-length:") && t->status == 200) {
        auto v = h.substr(15);
        while (!v.empty() && v.front() == ' ')
            v.remove_prefix(1);
        t->total = parse_u64(v);
    }
    return size * n;
}

size_t on_data(char* ptr, size_t size, size_t n, void* user) {
    auto* t = static_cast<Transfer*>(user);
    size_t len = size * n;
    if (t->error_body && (!t->body_to_sink || t->status < 200 || t->status > 299)) {
        if (t->error_body->size() + len > t->error_body_max) {
            t->error = Error(Errc::invalid_argument,
                             fmt::format("a reply larger than {} bytes", t->error_body_max));
            return 0;
        }
        t->error_body->append(ptr, len);
        return len;
    }
    if (t->status == 200 && t->skip > 0) {
        const size_t drop = size_t(std::min<uint64_t>(t->skip, len));
        t->skip -= drop;
        ptr += drop;
        if (drop == len) return size * n;
        len -= drop;
    }
    if (t->status == 206) t->skip = 0;
    size_t keep = len;
    if (t->limit && t->bytes + keep >= t->limit) {
        keep = size_t(t->limit - t->bytes);
        t->complete = true;
    }
    t->bytes += keep;
    if (t->max_size && t->bytes > t->max_size) {
        t->error = Error(Errc::invalid_argument, fmt::format("larger than {} bytes", t->max_size));
        return 0;
    }
    if (auto st = (*t->sink)(std::span<const char>(ptr, keep)); !st) {
        t->error = st.error();
        return 0;
    }
    // Stopping a transfer is returning less than was given.
    return t->complete ? 0 : size * n;
}

}  // namespace

namespace {

// A libcurl handle set up as every request wants it, freed with its header list.
struct Handle {
    const Curl* c;
    CURL* h;
    curl_slist* headers = nullptr;
    char errbuf[CURL_ERROR_SIZE] = {};
    Handle(const Curl* curl, CURL* handle) : c(curl), h(handle) {}
    ~Handle() {
        c->easy_cleanup(h);
        if (headers) c->slist_free_all(headers);
    }
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;
    void header(const std::string& line) { headers = c->slist_append(headers, line.c_str()); }
};

Result<std::unique_ptr<Handle>> open_handle(const std::string& url, const Options& opts,
                                            Transfer& t, bool follow) {
    const Curl* c = BALLAST_TRY(load_curl());
    CURL* h = c->easy_init();
    if (!h) return fail(Errc::failed, "{}: curl_easy_init failed", url);
    auto hd = std::make_unique<Handle>(c, h);
    c->easy_setopt(h, CURLOPT_URL, url.c_str());
    c->easy_setopt(h, CURLOPT_ERRORBUFFER, hd->errbuf);
    c->easy_setopt(h, CURLOPT_FOLLOWLOCATION, follow ? 1L : 0L);
    c->easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
    c->easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    c->easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    c->easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    c->easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    c->easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    c->easy_setopt(h, CURLOPT_CONNECTTIMEOUT, long(opts.connect_timeout.count()));
    if (opts.timeout.count() > 0) c->easy_setopt(h, CURLOPT_TIMEOUT, long(opts.timeout.count()));
    // A stalled link is an error after 30 s below 1 byte/s: flaky edge links resume instead.
    c->easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    c->easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 30L);
    c->easy_setopt(h, CURLOPT_USERAGENT,
                   "ballast/"
                   "1");
    if (!opts.ca_file.empty()) c->easy_setopt(h, CURLOPT_CAINFO, opts.ca_file.c_str());
    if (!opts.proxy.empty()) c->easy_setopt(h, CURLOPT_PROXY, opts.proxy.c_str());
    if (opts.no_proxy) c->easy_setopt(h, CURLOPT_NOPROXY, "*");
    if (opts.local_port > 0) {
        c->easy_setopt(h, CURLOPT_LOCALPORT, long(opts.local_port));
        c->easy_setopt(h, CURLOPT_LOCALPORTRANGE, long(std::max(opts.local_port_range, 1)));
    }
    // libcurl copies blobs (CURL_BLOB_COPY), so these may go out of scope after setopt.
    auto blob = [&](CURLoption o, const std::string& pem) {
        if (pem.empty()) return;
        curl_blob b{const_cast<char*>(pem.data()), pem.size(), CURL_BLOB_COPY};
        c->easy_setopt(h, o, &b);
    };
    blob(CURLOPT_CAINFO_BLOB, opts.ca_pem);
    blob(CURLOPT_SSLCERT_BLOB, opts.client_cert_pem);
    blob(CURLOPT_SSLKEY_BLOB, opts.client_key_pem);
    if (!opts.client_cert_pem.empty()) c->easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
    c->easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    c->easy_setopt(h, CURLOPT_HEADERDATA, &t);
    c->easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    c->easy_setopt(h, CURLOPT_WRITEDATA, &t);
    return hd;
}

Error transport_error(CURLcode rc, const std::string& url, const std::string& err) {
    const Errc code = rc == CURLE_OPERATION_TIMEDOUT ? Errc::timeout
                      : (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
                         rc == CURLE_COULDNT_RESOLVE_PROXY)
                          ? Errc::unavailable
                      : (rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE)
                          ? Errc::verification
                          : Errc::io;
    return Error(code, fmt::format("{}: {}", url, err));
}

// libcurl's CURLOPT_RANGE value: "from-last", "from-", or none.
std::string range_header(uint64_t from, uint64_t length) {
    if (length) return fmt::format("{}-{}", from, from + length - 1);
    if (from) return fmt::format("{}-", from);
    return {};
}

struct Upload {
    const Request* req;
    std::optional<Error> error;
};

size_t on_read(char* buf, size_t size, size_t n, void* user) {
    auto* u = static_cast<Upload*>(user);
    auto r = u->req->upload(buf, size * n);
    if (!r) {
        u->error = r.error();
        return CURL_READFUNC_ABORT;
    }
    return *r;
}

}  // namespace

Result<Response> get(const std::string& url, const Options& opts,
                     const std::function<Status(std::span<const char>)>& sink) {
    Transfer t{&sink, opts.max_size};
    t.skip = opts.resume_from;
    t.limit = opts.range_length;
    auto hd = BALLAST_TRY(open_handle(url, opts, t, true));
    const Curl* c = hd->c;
    CURL* h = hd->h;
    // Status >= 400 fails before any body reaches the sink (no error page written to a file).
    c->easy_setopt(h, CURLOPT_FAILONERROR, 1L);
    const std::string range = range_header(opts.resume_from, opts.range_length);
    if (!range.empty()) c->easy_setopt(h, CURLOPT_RANGE, range.c_str());
    // A request with a body (PATCH of a Kubernetes object); GET otherwise.
    if (!opts.method.empty()) {
        c->easy_setopt(h, CURLOPT_CUSTOMREQUEST, opts.method.c_str());
        c->easy_setopt(h, CURLOPT_POSTFIELDS, opts.body.c_str());
        c->easy_setopt(h, CURLOPT_POSTFIELDSIZE, long(opts.body.size()));
        if (!opts.content_type.empty()) {
            hd->header("Content-Type: " + opts.content_type);
            c->easy_setopt(h, CURLOPT_HTTPHEADER, hd->headers);
        }
    }
    CURLcode rc = c->easy_perform(h);
    long status = 0;
    c->easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    const std::string err = hd->errbuf[0] ? hd->errbuf : c->easy_strerror(rc);
    hd.reset();
    if (t.error) return std::unexpected(std::move(*t.error).context(url));
    if (t.complete) return Response{status, t.bytes, t.total};
    if (rc == CURLE_HTTP_RETURNED_ERROR || status >= 400)
        return fail(status == 404 ? Errc::not_found : Errc::unavailable, "{}: HTTP status {}", url,
                    status);
    if (rc != CURLE_OK) return std::unexpected(transport_error(rc, url, err));
    return Response{status, t.bytes, t.total};
}

Result<Reply> request(const std::string& url, const Options& opts, const Request& req,
                      const std::function<Status(std::span<const char>)>& sink) {
    Reply reply;
    const std::function<Status(std::span<const char>)> none;
    Transfer t{sink ? &sink : &none, opts.max_size};
    t.headers = &reply.headers;
    t.error_body = &reply.body;
    t.error_body_max = req.max_body ? req.max_body : (64u << 10);
    t.body_to_sink = bool(sink);
    t.skip = req.range_from;
    t.limit = req.range_length;
    auto hd = BALLAST_TRY(open_handle(url, opts, t, req.follow_redirects));
    const Curl* c = hd->c;
    CURL* h = hd->h;
    const std::string range = range_header(req.range_from, req.range_length);
    if (!range.empty()) c->easy_setopt(h, CURLOPT_RANGE, range.c_str());
    Upload up{&req, std::nullopt};
    if (req.method == "HEAD") {
        c->easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (req.upload) {
        c->easy_setopt(h, CURLOPT_UPLOAD, 1L);
        c->easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        c->easy_setopt(h, CURLOPT_READDATA, &up);
        c->easy_setopt(h, CURLOPT_INFILESIZE_LARGE, curl_off_t(req.upload_size));
        if (req.method != "PUT") c->easy_setopt(h, CURLOPT_CUSTOMREQUEST, req.method.c_str());
        // No "Expect: 100-continue" round trip before each upload.
        hd->header("Expect:");
    } else if (req.method != "GET") {
        c->easy_setopt(h, CURLOPT_CUSTOMREQUEST, req.method.c_str());
        c->easy_setopt(h, CURLOPT_POSTFIELDS, req.body.c_str());
        c->easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(req.body.size()));
    }
    for (const auto& line : req.headers)
        hd->header(line);
    if (hd->headers) c->easy_setopt(h, CURLOPT_HTTPHEADER, hd->headers);
    CURLcode rc = c->easy_perform(h);
    c->easy_getinfo(h, CURLINFO_RESPONSE_CODE, &reply.status);
    const std::string err = hd->errbuf[0] ? hd->errbuf : c->easy_strerror(rc);
    hd.reset();
    if (up.error) return std::unexpected(std::move(*up.error).context(url));
    if (t.error) return std::unexpected(std::move(*t.error).context(url));
    reply.bytes = t.bytes;
    if (t.complete) return reply;  // stopped on purpose at the range's end
    if (rc != CURLE_OK) return std::unexpected(transport_error(rc, url, err));
    return reply;
}

std::string redact(std::string_view text) {
    std::string out;
    size_t pos = 0;
    for (size_t s; (s = text.find("://", pos)) != std::string_view::npos;) {
        const size_t start = s + 3;
        size_t end = start;
        while (end < text.size() && !std::isspace(static_cast<unsigned char>(text[end])) &&
               text[end] != '"' && text[end] != '\'')
            ++end;
        std::string_view url = text.substr(start, end - start);
        out.append(text.substr(pos, start - pos));
        const size_t slash = std::min(url.find('/'), url.size());
        const size_t at = url.substr(0, slash).rfind('@');
        std::string_view rest = url;
        if (at != std::string_view::npos) {
            out += "***@";
            rest = url.substr(at + 1);
        }
        const size_t q = rest.find('?');
        out.append(rest.substr(0, q));
        if (q != std::string_view::npos) out += "?***";
        pos = end;
    }
    out.append(text.substr(pos));
    return out;
}

Result<std::string> get_string(const std::string& url, const Options& opts) {
    std::string body;
    Options o = opts;
    if (!o.max_size) o.max_size = 16u << 20;
    BALLAST_TRY(get(url, o, [&](std::span<const char> d) -> Status {
        body.append(d.data(), d.size());
        return {};
    }));
    return body;
}

}  // namespace ballast::http
