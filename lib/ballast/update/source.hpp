// Where an upgrade's bundle comes from: a local folder or tar, the https:// URL of a tar, or an
// oci://REGISTRY/REPO:TAG (or @sha256:…) artifact (update/artifact.hpp; the tag is resolved once,
// then everything goes by digest, and the signed manifest is checked before any image byte).
// Opening checks the signature and the manifest from the small members only (for a URL: one
// range request for the tar's first 64 KiB); the image is streamed later, straight into the
// slot, with no temporary copy. Over https a dropped connection is resumed with a range request
// from the last byte received, with bounded retries and backoff.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "ballast/boot/control.hpp"
#include "ballast/core/result.hpp"
#include "ballast/system/http.hpp"
#include "ballast/update/bundle.hpp"
#include "ballast/update/writer.hpp"

namespace ballast::update {

struct SourceOptions {
    std::string keyring;  // trusted certificates (PEM)
    // Registry credentials (containers-auth.json format) for oci:// sources; empty: none.
    std::string registry_auth;
    // The booted slot: an oci:// source with a chunk index fetches only the chunks this slot
    // does not hold (update/delta_plan.hpp), and copies the rest from it, each re-hashed.
    std::optional<boot::SlotDevice> seed;
    http::Options http;
    // Consecutive failed attempts (no byte received) before an https download gives up, and the
    // first wait between them (doubled each time, at most 30 s).
    int retries = 6;
    std::chrono::milliseconds backoff{1000};
};

struct OpenedSource {
    std::string where;  // the source as given
    bool remote = false;
    Checked checked;
    // What the download fetched, once the image was opened: an oci:// delta's planned bytes,
    // else the whole image. Null for sources that do not say (a local bundle, an https tar).
    std::shared_ptr<uint64_t> download_bytes;
    // A reader over the image, from its first byte (each call starts a new stream).
    std::function<Result<ImageReader>()> open_image;
};

[[nodiscard]] bool is_url(const std::string& source);
[[nodiscard]] Result<OpenedSource> open_source(const std::string& source, const SourceOptions& o);

}  // namespace ballast::update
