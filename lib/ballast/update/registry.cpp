#include "ballast/update/registry.hpp"

#include <cctype>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "ballast/core/encoding.hpp"
#include "ballast/core/text.hpp"

namespace ballast::update::oci {
namespace {

bool lower_alnum(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

// distribution's path components: [a-z0-9]+ joined by '.', '_', '__' or runs of '-'.
bool valid_repository(std::string_view r) {
    if (r.empty() || r.size() > 255) return false;
    size_t start = 0;
    while (start <= r.size()) {
        size_t end = r.find('/', start);
        if (end == std::string_view::npos) end = r.size();
        const auto part = r.substr(start, end - start);
        if (part.empty() || !lower_alnum(part.front()) || !lower_alnum(part.back())) return false;
        for (size_t i = 0; i < part.size(); ++i) {
            const char c = part[i];
            if (lower_alnum(c) || c == '-') continue;
            if (c == '.' || c == '_') {
                const bool double_underscore =
                    c == '_' && i + 1 < part.size() && part[i + 1] == '_';
                if (!lower_alnum(part[i - 1])) return false;
                if (double_underscore) ++i;
                if (!lower_alnum(part[i + 1])) return false;
                continue;
            }
            return false;
        }
        start = end + 1;
    }
    return true;
}

bool valid_digest(std::string_view d) {
    return d.size() == 71 && d.substr(0, 7) == "sha256:" && is_sha256_hex(std::string(d.substr(7)));
}

// Docker Hub's names for itself in credentials files.
std::string normalize_auth_key(std::string key) {
    for (const char* scheme : {"https://", "http://"})
        if (key.rfind(scheme, 0) == 0) key = key.substr(std::string_view(scheme).size());
    if (key.size() > 4 && key.compare(key.size() - 4, 4, "/v1/") == 0) key.resize(key.size() - 4);
    while (!key.empty() && key.back() == '/')
        key.pop_back();
    if (key == "index.docker.io" || key == "registry-1.docker.io") key = "docker.io";
    return key;
}

// "HTTP 400: DIGEST_INVALID: provided digest did not match uploaded content", from the errors
// document distribution-spec defines, or the status alone.
std::string describe(const http::Reply& r) {
    std::string out = fmt::format("HTTP {}", r.status);
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    if (j.is_object() && j.contains("errors") && j["errors"].is_array())
        for (const auto& e : j["errors"]) {
            if (!e.is_object()) continue;
            const auto code = e.value("code", std::string());
            const auto message = e.value("message", std::string());
            out +=
                fmt::format(": {}{}{}", code, code.empty() || message.empty() ? "" : ": ", message);
        }
    return out;
}

std::string url_encode(std::string_view s) {
    std::string out;
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~')
            out += char(c);
        else
            out += fmt::format("%{:02X}", c);
    }
    return out;
}

}  // namespace

std::string Reference::base_url() const {
    return registry == "docker.io" ? "https://registry-1.docker.io" : "https://" + registry;
}

std::string Reference::str() const {
    std::string out = registry + "/" + repository;
    if (!tag.empty()) out += ":" + tag;
    if (!digest.empty()) out += "@" + digest;
    return out;
}

Result<Reference> parse_reference(std::string_view text) {
    const std::string given(text);
    if (text.rfind("oci://", 0) == 0) text.remove_prefix(6);
    Reference r;
    if (const auto at = text.find('@'); at != std::string_view::npos) {
        r.digest = std::string(text.substr(at + 1));
        text = text.substr(0, at);
        if (!valid_digest(r.digest))
            return fail(Errc::invalid_argument,
                        "{}: the digest must be sha256: and 64 lower-case hex digits", given);
    }
    const auto slash = text.find('/');
    if (slash == std::string_view::npos)
        return fail(Errc::invalid_argument,
                    "{}: names no registry; write REGISTRY/REPOSITORY:TAG (for example "
                    "registry.example:5000/edge/os:1.2)",
                    given);
    r.registry = std::string(text.substr(0, slash));
    if (r.registry != "localhost" && r.registry.find_first_of(".:") == std::string::npos)
        return fail(Errc::invalid_argument,
                    "{}: '{}' is not a registry host (it needs a '.' or a ':port', or is "
                    "localhost); write REGISTRY/REPOSITORY:TAG",
                    given, r.registry);
    for (char c : r.registry)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != ':' &&
            c != '[' && c != ']')
            return fail(Errc::invalid_argument, "{}: '{}' is not a registry host", given,
                        r.registry);
    auto rest = text.substr(slash + 1);
    if (const auto colon = rest.rfind(':'); colon != std::string_view::npos) {
        r.tag = std::string(rest.substr(colon + 1));
        rest = rest.substr(0, colon);
        if (!valid_tag(r.tag))
            return fail(Errc::invalid_argument,
                        "{}: tag '{}' is not valid (letters, digits, '_', '.', '-'; at most 128)",
                        given, r.tag);
    }
    r.repository = std::string(rest);
    if (!valid_repository(r.repository))
        return fail(Errc::invalid_argument,
                    "{}: repository '{}' is not valid (lower-case letters and digits, parts "
                    "joined by '.', '_', '__' or '-', separated by '/')",
                    given, r.repository);
    if (r.tag.empty() && r.digest.empty())
        return fail(Errc::invalid_argument, "{}: names no tag or digest (add :TAG or @sha256:…)",
                    given);
    return r;
}

bool valid_tag(std::string_view tag) {
    if (tag.empty() || tag.size() > 128) return false;
    auto word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
    if (!word(tag[0])) return false;
    for (char c : tag)
        if (!word(c) && c != '.' && c != '-') return false;
    return true;
}

Result<Auths> parse_auths(std::string_view text, std::string_view where) {
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object())
        return fail(Errc::parse, "{}: not a JSON object", where);
    Auths out;
    if (!j.contains("auths")) return out;
    if (!j["auths"].is_object()) return fail(Errc::parse, "{}: 'auths' must be an object", where);
    for (const auto& [key, v] : j["auths"].items()) {
        if (!v.is_object() || !v.contains("auth")) continue;  // helpers, identity tokens
        if (!v["auth"].is_string())
            return fail(Errc::parse, "{}: auths.\"{}\".auth must be a string", where, key);
        auto decoded = base64_decode(v["auth"].get<std::string>());
        const auto colon = decoded ? decoded->find(':') : std::string::npos;
        if (!decoded || colon == std::string::npos)
            return fail(Errc::parse, "{}: auths.\"{}\".auth is not base64 of user:password", where,
                        key);
        out[normalize_auth_key(key)] = {decoded->substr(0, colon), decoded->substr(colon + 1)};
    }
    return out;
}

std::optional<Credential> find_credential(const Auths& auths, const Reference& ref) {
    std::string key = ref.registry + "/" + ref.repository;
    for (;;) {
        if (auto it = auths.find(key); it != auths.end()) return it->second;
        const auto slash = key.rfind('/');
        if (slash == std::string::npos) return std::nullopt;
        key.resize(slash);
    }
}

std::optional<std::string> default_auth_file() {
    std::vector<std::string> candidates;
    auto env = [](const char* name) -> std::string {
        const char* v = std::getenv(name);
        return v ? v : "";
    };
    if (!env("REGISTRY_AUTH_FILE").empty()) candidates.push_back(env("REGISTRY_AUTH_FILE"));
    if (!env("XDG_RUNTIME_DIR").empty())
        candidates.push_back(env("XDG_RUNTIME_DIR") + "/containers/auth.json");
    if (!env("HOME").empty()) {
        candidates.push_back(env("HOME") + "/.config/containers/auth.json");
        candidates.push_back(env("HOME") + "/.docker/config.json");
    }
    std::error_code ec;
    for (const auto& c : candidates)
        if (std::filesystem::exists(c, ec)) return c;
    return std::nullopt;
}

Result<Challenge> parse_challenge(std::string_view h) {
    Challenge c;
    size_t i = 0;
    auto skip_space = [&] {
        while (i < h.size() && (h[i] == ' ' || h[i] == '\t'))
            ++i;
    };
    skip_space();
    while (i < h.size() && h[i] != ' ')
        c.scheme += char(std::tolower(static_cast<unsigned char>(h[i++])));
    if (c.scheme != "bearer" && c.scheme != "basic")
        return fail(Errc::unsupported,
                    "the registry asks for '{}' authentication (Basic and "
                    "Bearer are supported)",
                    c.scheme);
    while (i < h.size()) {
        skip_space();
        std::string key;
        while (i < h.size() && h[i] != '=' && h[i] != ',')
            key += char(std::tolower(static_cast<unsigned char>(h[i++])));
        if (i >= h.size() || h[i] == ',') {
            ++i;
            continue;
        }
        ++i;  // '='
        std::string value;
        if (i < h.size() && h[i] == '"') {
            ++i;
            while (i < h.size() && h[i] != '"') {
                if (h[i] == '\\' && i + 1 < h.size()) ++i;
                value += h[i++];
            }
            if (i >= h.size())
                return fail(Errc::parse, "WWW-Authenticate: an unterminated quoted value");
            ++i;
        } else {
            while (i < h.size() && h[i] != ',')
                value += h[i++];
            while (!value.empty() && value.back() == ' ')
                value.pop_back();
        }
        c.params[key] = value;
        skip_space();
        if (i < h.size() && h[i] == ',') ++i;
    }
    if (c.scheme == "bearer" && !c.params.count("realm"))
        return fail(Errc::parse, "WWW-Authenticate: a Bearer challenge without a realm");
    return c;
}

Client::Client(Reference ref, std::optional<Credential> cred, http::Options http)
    : ref_(std::move(ref)), cred_(std::move(cred)), http_(std::move(http)) {}

std::string Client::url_for(const std::string& p) const {
    if (p.rfind("https://", 0) == 0 || p.rfind("http://", 0) == 0) return p;
    if (!p.empty() && p.front() == '/') return ref_.base_url() + p;
    return fmt::format("{}/v2/{}/{}", ref_.base_url(), ref_.repository, p);
}

Result<std::string> Client::fetch_token(const Challenge& c, bool push) {
    const std::string realm = c.params.at("realm");
    // Credentials go to the token service only over https.
    if (realm.rfind("https://", 0) != 0)
        return fail(Errc::verification,
                    "{}: the token service {} is not https; no credentials are sent there",
                    ref_.registry, realm);
    std::string url = realm + (realm.find('?') == std::string::npos ? "?" : "&");
    if (auto s = c.params.find("service"); s != c.params.end())
        url += "service=" + url_encode(s->second) + "&";
    url += "scope=" + url_encode(fmt::format("repository:{}:{}", ref_.repository,
                                             push ? "pull,push" : "pull"));
    http::Request req;
    // The token service gets the Basic credentials (as Docker's client sends them, to the realm
    // the registry names); never to where it might redirect.
    req.follow_redirects = false;
    if (cred_)
        req.headers.push_back("Authorization: Basic " +
                              base64_encode(cred_->username + ":" + cred_->password));
    auto r = BALLAST_TRY_CTX(http::request(url, http_, req), "token for {}", ref_.registry);
    if (r.status == 401 || r.status == 403)
        return fail(Errc::permission_denied, "{}: the token service refused {} ({})", ref_.registry,
                    cred_ ? fmt::format("the credentials of '{}'", cred_->username)
                          : std::string("anonymous access"),
                    describe(r));
    if (r.status != 200)
        return fail(Errc::unavailable, "{}: the token service answered {}", ref_.registry,
                    describe(r));
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    std::string token;
    if (j.is_object()) {
        if (j.contains("token") && j["token"].is_string())
            token = j["token"].get<std::string>();
        else if (j.contains("access_token") && j["access_token"].is_string())
            token = j["access_token"].get<std::string>();
    }
    if (token.empty() || token.find_first_of("\r\n") != std::string::npos)
        return fail(Errc::parse, "{}: the token service's answer holds no token", ref_.registry);
    return token;
}

Result<http::Reply> Client::call(const std::string& path_or_url, http::Request req, bool push,
                                 const std::function<Status(std::span<const char>)>& sink) {
    const std::string url = url_for(path_or_url);
    // A URL the registry handed out (an upload's Location) may name any host: the registry's
    // credentials go only to its own origin, over https.
    const std::string origin = ref_.base_url() + "/";
    if (url.compare(0, origin.size(), origin) != 0)
        return fail(Errc::verification,
                    "{}: the registry names another host for the next request; its credentials "
                    "are not sent there: {}",
                    ref_.registry, http::redact(url));
    for (int attempt = 0;; ++attempt) {
        http::Request r = req;
        {
            std::lock_guard l(auth_m_);
            if (!authorization_.empty() && (authorization_push_ || !push))
                r.headers.push_back(authorization_);
        }
        auto reply = BALLAST_TRY(http::request(url, http_, r, sink));
        if (reply.status != 401) return reply;
        if (attempt > 0)
            return fail(Errc::permission_denied, "{}: {} were refused ({})", ref_.registry,
                        cred_ ? fmt::format("the credentials of '{}'", cred_->username)
                              : std::string("anonymous requests"),
                        describe(reply));
        const auto header = reply.headers.find("www-authenticate");
        if (header == reply.headers.end())
            return fail(Errc::permission_denied, "{}: HTTP 401 without a challenge", ref_.registry);
        const auto challenge =
            BALLAST_TRY_CTX(parse_challenge(header->second), "{}", ref_.registry);
        if (challenge.scheme == "basic") {
            if (!cred_)
                return fail(Errc::permission_denied,
                            "{}: the registry asks for credentials and none are known for {}",
                            ref_.registry, ref_.str());
            std::lock_guard l(auth_m_);
            authorization_ =
                "Authorization: Basic " + base64_encode(cred_->username + ":" + cred_->password);
            authorization_push_ = true;
        } else {
            auto token = "Authorization: Bearer " + BALLAST_TRY(fetch_token(challenge, push));
            std::lock_guard l(auth_m_);
            authorization_ = std::move(token);
            authorization_push_ = push;
        }
        // A streamed body cannot be sent twice from here: the caller resumes it.
        if (req.upload)
            return fail(Errc::unavailable, "{}: the registry asked for new credentials mid-upload",
                        ref_.registry);
    }
}

Result<bool> Client::blob_exists(const std::string& digest) {
    http::Request req;
    req.method = "HEAD";
    auto r = BALLAST_TRY(call("blobs/" + digest, req, true));
    if (r.status == 200) return true;
    if (r.status == 404) return false;
    return fail(Errc::unavailable, "{}: HEAD of blob {}: {}", ref_.registry, digest, describe(r));
}

Status Client::push_blob(const std::string& digest, uint64_t size,
                         const std::function<Result<size_t>(uint64_t, char*, size_t)>& read,
                         uint64_t piece, const std::function<void(uint64_t, uint64_t)>& progress) {
    auto start = [&]() -> Result<std::string> {
        http::Request req;
        req.method = "POST";
        auto r = BALLAST_TRY(call("blobs/uploads/", req, true));
        if (r.status != 202 || !r.headers.count("location"))
            return fail(Errc::unavailable, "{}: starting an upload: {}", ref_.registry,
                        describe(r));
        return url_for(r.headers["location"]);
    };
    std::string location = BALLAST_TRY(start());
    uint64_t offset = 0;
    // Failures count until the upload gets further than it ever was: a fault that recurs at the
    // same byte (after a restart from 0) ends the push instead of looping.
    uint64_t furthest = 0;
    int failures = 0;
    auto wait = std::chrono::milliseconds(500);
    while (offset < size) {
        const uint64_t n = std::min<uint64_t>(piece, size - offset);
        http::Request req;
        req.method = "PATCH";
        req.headers = {"Content-Type: application/octet-stream",
                       fmt::format("Content-Range: {}-{}", offset, offset + n - 1)};
        uint64_t sent = 0;
        std::optional<Error> local;  // reading our own file failed: no retry helps
        req.upload_size = n;
        req.upload = [&, base = offset](char* buf, size_t len) -> Result<size_t> {
            const size_t k = size_t(std::min<uint64_t>(len, n - sent));
            if (k == 0) return size_t(0);
            auto got = read(base + sent, buf, k);
            if (!got) {
                local = got.error();
                return std::unexpected(got.error());
            }
            sent += *got;
            return *got;
        };
        auto r = call(location, req, true);
        if (local) return std::unexpected(std::move(*local));
        // Refused credentials and a registry pointing elsewhere are not link trouble.
        if (!r &&
            (r.error().code() == Errc::verification || r.error().code() == Errc::permission_denied))
            return std::unexpected(r.error());
        if (r && r->status == 202 && r->headers.count("location")) {
            location = url_for(r->headers["location"]);
            offset += n;
            if (offset > furthest) {
                furthest = offset;
                failures = 0;
                wait = std::chrono::milliseconds(500);
            }
            if (progress) progress(offset, size);
            continue;
        }
        const std::string why = r ? describe(*r) : r.error().what();
        if (++failures > 5)
            return fail(Errc::unavailable, "{}: uploading {} failed {} times, last at byte {}: {}",
                        ref_.registry, digest, failures, offset, why);
        spdlog::warn("push: {}: {} at byte {}; asking the registry where the upload stands",
                     digest.substr(0, 19), http::redact(why), offset);
        std::this_thread::sleep_for(wait);
        wait = std::min<std::chrono::milliseconds>(wait * 2, std::chrono::seconds(10));
        // Where the registry stands: "Range: 0-<last byte>"; with no upload any more, no Range,
        // or "0-0" (an empty upload and a one-byte one look the same), a new upload from 0.
        http::Request status;
        auto st = call(location, status, true);
        std::optional<uint64_t> stands;
        if (st && st->status == 204) {
            const auto range = st->headers["range"];
            uint64_t last = 0;
            const char* b = range.c_str() + std::min<size_t>(range.size(), 2);
            const auto [end, ec] = std::from_chars(b, range.c_str() + range.size(), last);
            if (range.rfind("0-", 0) == 0 && ec == std::errc() &&
                end == range.c_str() + range.size() && last > 0 && last < size) {
                stands = last + 1;
                if (st->headers.count("location")) location = url_for(st->headers["location"]);
            }
        }
        if (stands) {
            offset = *stands;
        } else {
            location = BALLAST_TRY(start());
            offset = 0;
        }
    }
    http::Request close;
    close.method = "PUT";
    close.headers = {"Content-Type: application/octet-stream"};
    const std::string url =
        location + (location.find('?') == std::string::npos ? "?" : "&") + "digest=" + digest;
    auto r = BALLAST_TRY(call(url, close, true));
    if (r.status != 201)
        return fail(Errc::verification, "{}: closing the upload of {}: {}", ref_.registry, digest,
                    describe(r));
    return {};
}

Result<std::string> Client::put_manifest(const std::string& tag_or_digest, const std::string& bytes,
                                         const std::string& media_type) {
    http::Request req;
    req.method = "PUT";
    req.body = bytes;
    req.headers = {"Content-Type: " + media_type};
    auto r = BALLAST_TRY(call("manifests/" + tag_or_digest, req, true));
    if (r.status != 201)
        return fail(Errc::unavailable, "{}: storing the manifest as {}: {}", ref_.registry,
                    tag_or_digest, describe(r));
    return r.headers["docker-content-digest"];
}

}  // namespace ballast::update::oci
