// OCI registries (distribution-spec 1.1): references, credentials, the auth challenge, and a client
// for the calls bundles need. The pure parts (parse_reference, parse_auths, find_credential,
// parse_challenge) do no I/O.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ballast/core/result.hpp"
#include "ballast/system/http.hpp"

namespace ballast::update::oci {

// REGISTRY/REPO[:TAG][@sha256:HEX], with an optional "oci://" in front. The registry is always
// named (a host with a '.' or ':' in it, or "localhost"): a node must never guess where its OS
// comes from.
struct Reference {
    std::string registry;    // "harbor.example:8443"
    std::string repository;  // "edge/ballast-os"
    std::string tag;         // empty when only a digest is given
    std::string digest;      // "sha256:<hex>", or empty
    // The registry's API base: https://REGISTRY (Docker Hub's API lives elsewhere).
    [[nodiscard]] std::string base_url() const;
    // "registry/repository:tag" or "...@digest", as a user wrote it.
    [[nodiscard]] std::string str() const;
};
[[nodiscard]] Result<Reference> parse_reference(std::string_view text);
// A tag as the distribution spec allows: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
[[nodiscard]] bool valid_tag(std::string_view tag);

struct Credential {
    std::string username, password;
};
// The containers-auth.json / ~/.docker/config.json format: {"auths": {KEY: {"auth":
// base64("user:password")}}}; KEY a host, host/namespace, or a URL such as
// "https://index.docker.io/v1/". `where` names the file in messages.
using Auths = std::map<std::string, Credential>;
[[nodiscard]] Result<Auths> parse_auths(std::string_view text, std::string_view where);
// The most specific entry for the reference: registry/repository, then each shorter namespace,
// then the registry itself (containers-auth.json(5)).
[[nodiscard]] std::optional<Credential> find_credential(const Auths& auths, const Reference& ref);
// The files searched when none is named: $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/
// auth.json, ~/.config/containers/auth.json, ~/.docker/config.json; the first that exists.
[[nodiscard]] std::optional<std::string> default_auth_file();

// WWW-Authenticate: Bearer realm="…",service="…",scope="…" or Basic realm="…".
struct Challenge {
    std::string scheme;  // "bearer" or "basic", lower case
    std::map<std::string, std::string> params;
};
[[nodiscard]] Result<Challenge> parse_challenge(std::string_view header);

// A client for one repository: answers 401 challenges (Basic, or Bearer with a token fetched
// from the realm and cached until it is refused), and never hands the registry's credentials to
// another host.
class Client {
  public:
    Client(Reference ref, std::optional<Credential> cred, http::Options http);

    // One call to a path under /v2/<repository>/ (e.g. "blobs/uploads/") or an absolute URL
    // the registry gave (an upload's Location). `push` asks for push rights.
    [[nodiscard]] Result<http::Reply> call(
        const std::string& path_or_url, http::Request req, bool push = false,
        const std::function<Status(std::span<const char>)>& sink = {});

    [[nodiscard]] Result<bool> blob_exists(const std::string& digest);
    // Uploads a blob in pieces of `piece` bytes (PATCH), then closes the upload with its digest.
    // `read(offset, buf, n)` gives the blob's bytes. A piece that fails is retried where the
    // registry says the upload stands (its Range), a few times; `progress(done, total)`.
    [[nodiscard]] Status push_blob(
        const std::string& digest, uint64_t size,
        const std::function<Result<size_t>(uint64_t, char*, size_t)>& read,
        uint64_t piece = 16u << 20, const std::function<void(uint64_t, uint64_t)>& progress = {});
    // PUT of a manifest under `tag_or_digest`; returns the digest the registry reports.
    [[nodiscard]] Result<std::string> put_manifest(const std::string& tag_or_digest,
                                                   const std::string& bytes,
                                                   const std::string& media_type);

    [[nodiscard]] const Reference& reference() const { return ref_; }

  private:
    [[nodiscard]] Result<std::string> fetch_token(const Challenge& c, bool push);
    [[nodiscard]] std::string url_for(const std::string& path_or_url) const;

    Reference ref_;
    std::optional<Credential> cred_;
    http::Options http_;
    // Several threads call at once (a delta's ranges in flight): the answer to a challenge is
    // shared, under this lock.
    std::mutex auth_m_;
    std::string authorization_;  // "Authorization: …" once a challenge was answered
    bool authorization_push_ = false;
};

}  // namespace ballast::update::oci
