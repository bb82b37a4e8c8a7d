#include "ballast/update/oci_bundle.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "ballast/core/atomic_file.hpp"
#include "ballast/core/copy.hpp"
#include "ballast/core/fd.hpp"
#include "ballast/core/json.hpp"
#include "ballast/core/sha256.hpp"
#include "ballast/update/artifact.hpp"
#include "ballast/update/registry.hpp"

namespace ballast::update::oci {
namespace fs = std::filesystem;
namespace {

// One blob of the layout: written under a temporary name, hashed, then renamed to its digest.
class BlobWriter {
  public:
    explicit BlobWriter(fs::path dir) : dir_(std::move(dir)) {}

    Result<Descriptor> small(std::string_view data, std::string media_type, std::string title) {
        const auto hex = BALLAST_TRY(sha256_hex(data));
        BALLAST_TRY(write_file_atomic(dir_ / hex, data));
        bytes_ += data.size();
        return Descriptor{std::move(media_type), "sha256:" + hex, data.size(), std::move(title)};
    }

    // A bundle member, which must hash to `want` (the signed manifest's digest).
    Status member(const Bundle::Member& m, const Descriptor& want) {
        const auto tmp = dir_ / (".tmp-" + want.digest.substr(7));
        std::error_code ec;
        fs::remove(tmp, ec);
        // Whatever fails below, no partial blob stays behind.
        struct Cleanup {
            const fs::path& p;
            bool armed = true;
            ~Cleanup() {
                std::error_code e;
                if (armed) fs::remove(p, e);
            }
        } cleanup{tmp};
        UniqueFd in(::open(m.path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!in) return fail_errno(errno, m.path);
        struct stat st {};
        ::fstat(in.get(), &st);
        auto h = BALLAST_TRY(Sha256::make());
        auto tap = [&](std::span<const uint8_t> d) { h.update(d); };
        // A whole file is hard-linked when the layout is on the same filesystem: a 1 GiB image
        // costs one read to hash, no copy.
        if (m.offset == 0 && uint64_t(st.st_size) == m.size &&
            ::link(m.path.c_str(), tmp.c_str()) == 0) {
            UniqueFd null(::open("/dev/null", O_WRONLY | O_CLOEXEC));
            BALLAST_TRY(copy_bytes(in.get(), 0, m.size, null.get(), m.path, tap));
        } else {
            UniqueFd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
            if (!out) return fail_errno(errno, tmp.string());
            BALLAST_TRY(copy_bytes(in.get(), m.offset, m.size, out.get(), m.path, tap));
            if (::fsync(out.get()) < 0) return fail_errno(errno, tmp.string());
        }
        if (const auto got = "sha256:" + h.hex(); got != want.digest)
            return fail(Errc::verification, "{} is {}, the signed manifest says {}", want.title,
                        got, want.digest);
        if (::rename(tmp.c_str(), (dir_ / want.digest.substr(7)).c_str()) < 0)
            return fail_errno(errno, tmp.string());
        cleanup.armed = false;
        bytes_ += m.size;
        return {};
    }

    [[nodiscard]] uint64_t bytes() const { return bytes_; }

  private:
    fs::path dir_;
    uint64_t bytes_ = 0;
};

// index.json as it is, or a new one; refused when it is not an OCI image index.
Result<nlohmann::json> read_layout_index(const fs::path& path) {
    std::error_code ec;
    if (!fs::exists(path, ec))
        return nlohmann::json{{"schemaVersion", 2},
                              {"mediaType", kImageIndexType},
                              {"manifests", nlohmann::json::array()}};
    const auto text = BALLAST_TRY(read_file(path, 4u << 20));
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("manifests") ||
        !j["manifests"].is_array())
        return fail(Errc::parse, "{}: not an OCI image index (no 'manifests' array)",
                    path.string());
    return j;
}

}  // namespace

Result<BundleArtifact> bundle_artifact(const Bundle& b) {
    BundleArtifact a;
    auto text = BALLAST_TRY(b.read_small(kManifestName));
    if (!text)
        return fail(Errc::invalid_argument, "{}: not a bundle (no {})", b.path(), kManifestName);
    auto sig = BALLAST_TRY(b.read_small(kSignatureName));
    if (!sig)
        return fail(Errc::verification, "{}: unsigned bundle (no {})", b.path(), kSignatureName);
    a.manifest = BALLAST_TRY_CTX(parse_manifest(*text), "{}", b.path());
    a.manifest_text = std::move(*text);
    a.signature = std::move(*sig);
    // Digests first: no BALLAST_TRY inside a braced initializer (its early return leaks).
    const std::string man_sha256 = BALLAST_TRY(sha256_hex(a.manifest_text));
    const std::string sig_sha256 = BALLAST_TRY(sha256_hex(a.signature));
    const Descriptor man{kManifestLayerType, "sha256:" + man_sha256, a.manifest_text.size(),
                         kManifestName};
    const Descriptor sg{kSignatureLayerType, "sha256:" + sig_sha256, a.signature.size(),
                        kSignatureName};
    a.layers = bundle_layers(a.manifest, man, sg);
    for (const auto& l : a.layers) {
        if (l.title == kManifestName || l.title == kSignatureName) {
            a.members.emplace_back();
            continue;
        }
        const auto member = b.member(l.title);
        if (!member)
            return fail(Errc::invalid_argument, "{}: {} named by the manifest is missing", b.path(),
                        l.title);
        if (member->size != l.size)
            return fail(Errc::verification, "{}: {} is {} bytes, the manifest says {}", b.path(),
                        l.title, member->size, l.size);
        a.members.push_back(member);
    }
    a.oci_manifest = artifact_manifest(a.manifest, a.layers);
    a.oci_digest = "sha256:" + BALLAST_TRY(sha256_hex(a.oci_manifest));
    return a;
}

Result<ExportResult> export_layout(const Bundle& b, const std::string& dir,
                                   const std::string& tag) {
    if (!valid_tag(tag))
        return fail(Errc::invalid_argument,
                    "tag '{}' is not valid: letters, digits, '_', '.' and '-', at most 128, not "
                    "starting with '.' or '-'",
                    tag);
    const auto a = BALLAST_TRY(bundle_artifact(b));
    const fs::path root(dir);
    const fs::path blobs = root / "blobs" / "sha256";
    std::error_code ec;
    fs::create_directories(blobs, ec);
    if (ec) return fail_errno(ec.value(), blobs.string());
    BlobWriter w(blobs);
    for (size_t i = 0; i < a.layers.size(); ++i) {
        const auto& l = a.layers[i];
        if (a.members[i])
            BALLAST_TRY_CTX(w.member(*a.members[i], l), "{}", b.path());
        else
            BALLAST_TRY(w.small(l.title == kManifestName ? a.manifest_text : a.signature,
                                l.media_type, l.title));
    }
    BALLAST_TRY(w.small(kEmptyBlob, kEmptyType, ""));
    const auto art = BALLAST_TRY(w.small(a.oci_manifest, kImageManifestType, ""));

    BALLAST_TRY(write_file_atomic(root / "oci-layout", R"({"imageLayoutVersion":"1.0.0"})"));
    const auto index_path = root / "index.json";
    auto index = BALLAST_TRY(read_layout_index(index_path));
    auto& list = index["manifests"];
    nlohmann::json kept = nlohmann::json::array();
    auto ref = [](const nlohmann::json& e) -> std::string {
        if (!e.is_object() || !e.contains("annotations")) return "";
        return json_field<std::string>(e["annotations"], kRefName, "");
    };
    for (const auto& e : list)
        if (ref(e) != tag) kept.push_back(e);
    kept.push_back({{"mediaType", kImageManifestType},
                    {"artifactType", kArtifactType},
                    {"digest", art.digest},
                    {"size", art.size},
                    {"annotations", {{kRefName, tag}}}});
    list = std::move(kept);
    BALLAST_TRY(write_file_atomic(index_path, json_text(index, 2) + "\n"));
    return ExportResult{art.digest, art.size, w.bytes()};
}

Result<PushResult> push_bundle(const Bundle& b, Client& client,
                               const std::function<void(const PushProgress&)>& progress) {
    const auto& ref = client.reference();
    if (ref.tag.empty() || !ref.digest.empty())
        return fail(Errc::invalid_argument, "{}: name a tag to push to, not a digest", ref.str());
    const auto a = BALLAST_TRY(bundle_artifact(b));
    PushResult out;
    out.digest = a.oci_digest;
    struct Blob {
        std::string digest, title;
        uint64_t size;
        std::optional<Bundle::Member> member;
        std::string_view bytes;
    };
    std::vector<Blob> blobs{{kEmptyDigest, "config", kEmptyBlob.size(), std::nullopt, kEmptyBlob}};
    for (size_t i = 0; i < a.layers.size(); ++i) {
        const auto& l = a.layers[i];
        std::string_view bytes;
        if (!a.members[i]) bytes = l.title == kManifestName ? a.manifest_text : a.signature;
        blobs.push_back({l.digest, l.title, l.size, a.members[i], bytes});
    }
    for (const auto& blob : blobs)
        out.total += blob.size;
    for (const auto& blob : blobs) {
        if (BALLAST_TRY_CTX(client.blob_exists(blob.digest), "push {}", blob.title)) {
            out.skipped += blob.size;
            if (progress) progress({blob.title, blob.size, blob.size, true});
            continue;
        }
        UniqueFd fd;
        if (blob.member) {
            fd = UniqueFd(::open(blob.member->path.c_str(), O_RDONLY | O_CLOEXEC));
            if (!fd) return fail_errno(errno, blob.member->path);
        }
        auto read = [&](uint64_t off, char* buf, size_t n) -> Result<size_t> {
            if (!blob.member) {
                const size_t k = std::min<size_t>(n, blob.bytes.size() - size_t(off));
                std::copy_n(blob.bytes.data() + off, k, buf);
                return k;
            }
            const ssize_t r = ::pread(fd.get(), buf, n, off_t(blob.member->offset + off));
            if (r < 0) return fail_errno(errno, blob.member->path);
            if (r == 0)
                return fail(Errc::io, "{}: ends before its {} bytes", blob.title, blob.size);
            return size_t(r);
        };
        BALLAST_TRY_CTX(client.push_blob(blob.digest, blob.size, read, 16u << 20,
                                         [&](uint64_t done, uint64_t total) {
                                             if (progress)
                                                 progress({blob.title, done, total, false});
                                         }),
                        "push {}", blob.title);
        out.uploaded += blob.size;
    }
    const auto got = BALLAST_TRY(client.put_manifest(ref.tag, a.oci_manifest, kImageManifestType));
    if (!got.empty() && got != a.oci_digest)
        return fail(Errc::verification, "{}: the registry stored the manifest as {}, not {}",
                    ref.str(), got, a.oci_digest);
    return out;
}

}  // namespace ballast::update::oci
