// Where an upgrade's bundle comes from: a local folder or tar, the https:// URL of a tar, or an
// oci://REGISTRY/REPO:TAG (or @sha256:…) artifact (update/artifact.hpp; the tag is resolved once,
// then everything goes by digest, and the signed manifest is checked before any image byte).
// Opening checks the signature and the manifest from the small members only (for a URL: one
// range request for the tar's first 64 KiB); the image is streamed later, straight into the
// slot, with no temporary copy. Over https a dropped connection is resumed with a range request
// from the last byte received, with bounded retries and backoff.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "ballast/boot/control.hpp"
#include "ballast/core/result.hpp"
#include "ballast/system/http.hpp"
#include "ballast/update/bundle.hpp"
#include "ballast/update/delta_source.hpp"
#include "ballast/update/http_stream.hpp"
#include "ballast/update/writer.hpp"

namespace ballast::update {

struct SourceOptions {
    std::string keyring;  // trusted certificates (PEM)
    // Registry credentials (containers-auth.json format) for oci:// sources; empty: none.
    std::string registry_auth;
    http::Options http;
    RetryPolicy retry;  // for https and registry downloads
};

// How an image will be downloaded: what the plan says before the first byte is fetched.
struct DownloadPlan {
    uint64_t image = 0;     // the image's size
    uint64_t fetch = 0;     // bytes to download (0: a local bundle)
    size_t requests = 0;    // range requests of a delta (0: one stream, or none)
    uint64_t copy = 0;      // bytes copied from the booted slot
    uint64_t in_place = 0;  // bytes already in place in the target
    bool delta = false;
    std::string why;  // why a delta was not planned, when it was not ("" otherwise)
};

// Bytes downloaded so far by an opened source's reader (progress reports them).
struct DownloadMeter {
    std::atomic<uint64_t> done{0};
};

struct OpenedSource {
    std::string where;  // the source as given
    bool remote = false;
    Checked checked;
    // Plans the download against what the node holds: a delta when the source has a chunk index
    // (oci://) and the node holds chunks of it; else the whole image. `open_image` then follows
    // the last plan made (none made: the whole image).
    std::function<Result<DownloadPlan>(const Holdings&)> plan;
    // A reader over the image, from its first byte (each call starts a new stream).
    std::function<Result<ImageReader>()> open_image;
    std::shared_ptr<DownloadMeter> meter = std::make_shared<DownloadMeter>();
};

// One line for a person: how many bytes, fetched how, reused from where.
[[nodiscard]] std::string describe(const DownloadPlan& p);

[[nodiscard]] bool is_url(const std::string& source);
[[nodiscard]] Result<OpenedSource> open_source(const std::string& source, const SourceOptions& o);

}  // namespace ballast::update
