// Bundles as OCI artifacts: the artifact manifest (layers in their fixed order with the signed
// digests, the empty config, the same bytes for the same input), and the registry's pure parts:
// references, credentials files and auth challenges.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "ballast/update/artifact.hpp"
#include "ballast/update/registry.hpp"

using ballast::update::Manifest;
using ballast::update::oci::artifact_manifest;
using ballast::update::oci::bundle_layers;
using ballast::update::oci::Descriptor;
using ballast::update::oci::find_credential;
using ballast::update::oci::parse_auths;
using ballast::update::oci::parse_challenge;
using ballast::update::oci::parse_reference;

namespace {

Manifest release(bool with_index) {
    Manifest m;
    m.os_name = "ballast-os";
    m.version = "1.2.0";
    m.compatible = "ballast-amd64";
    m.image = {"rootfs.img", 1000, std::string(64, 'a'), "squashfs"};
    if (with_index) m.index = Manifest::Index{"rootfs.bcidx", 84, std::string(64, 'b')};
    m.created = "2026-12-06T00:00:00Z";
    return m;
}

}  // namespace

TEST_CASE("artifact manifest: layers, config and annotations") {
    const Descriptor man{"application/vnd.ballast.manifest.v1+json",
                         "sha256:" + std::string(64, 'c'), 400, "manifest.json"};
    const Descriptor sig{"application/vnd.ballast.manifest.sig.v1+cms",
                         "sha256:" + std::string(64, 'd'), 800, "manifest.json.sig"};
    const auto m = release(true);
    const auto text = artifact_manifest(m, bundle_layers(m, man, sig));
    CHECK(text == artifact_manifest(m, bundle_layers(m, man, sig)));
    const auto j = nlohmann::json::parse(text);
    CHECK(j["schemaVersion"] == 2);
    CHECK(j["mediaType"] == "application/vnd.oci.image.manifest.v1+json");
    CHECK(j["artifactType"] == "application/vnd.ballast.os.v1");
    CHECK(j["config"]["mediaType"] == "application/vnd.oci.empty.v1+json");
    CHECK(j["config"]["size"] == 2);
    REQUIRE(j["layers"].size() == 4);
    std::vector<std::string> titles;
    for (const auto& l : j["layers"])
        titles.push_back(l["annotations"]["org.opencontainers.image.title"]);
    CHECK(titles == std::vector<std::string>{"manifest.json", "manifest.json.sig", "rootfs.bcidx",
                                             "rootfs.img"});
    CHECK(j["layers"][2]["digest"] == "sha256:" + std::string(64, 'b'));
    CHECK(j["layers"][2]["size"] == 84);
    CHECK(j["layers"][3]["mediaType"] == "application/vnd.ballast.rootfs.squashfs.v1");
    CHECK(j["layers"][3]["digest"] == "sha256:" + std::string(64, 'a'));
    CHECK(j["annotations"]["org.opencontainers.image.version"] == "1.2.0");
    // Without an index: three layers.
    const auto plain = release(false);
    CHECK(nlohmann::json::parse(artifact_manifest(plain, bundle_layers(plain, man, sig)))["layers"]
              .size() == 3);
}

TEST_CASE("registry references") {
    auto r = parse_reference("oci://harbor.example:8443/edge/ballast-os:1.2.0");
    REQUIRE(r);
    CHECK(r->registry == "harbor.example:8443");
    CHECK(r->repository == "edge/ballast-os");
    CHECK(r->tag == "1.2.0");
    CHECK(r->digest.empty());
    CHECK(r->base_url() == "https://harbor.example:8443");
    CHECK(r->str() == "harbor.example:8443/edge/ballast-os:1.2.0");
    const std::string d = "sha256:" + std::string(64, 'a');
    r = parse_reference("localhost/os@" + d);
    REQUIRE(r);
    CHECK(r->registry == "localhost");
    CHECK(r->tag.empty());
    CHECK(r->digest == d);
    r = parse_reference("docker.io/library/os:1");
    REQUIRE(r);
    CHECK(r->base_url() == "https://registry-1.docker.io");
    r = parse_reference("r.example/a__b/c-d.e:t@" + d);
    REQUIRE(r);
    CHECK(r->repository == "a__b/c-d.e");
    CHECK(r->tag == "t");
    for (const std::string& bad : std::vector<std::string>{
             "os:1", "edge/os:1", "r.example/Os:1", "r.example/os", "r.example/os:-x",
             "r.example/os@sha256:abc", "r.example//os:1", "r.example/os-:1", "r.example/a..b:1",
             "r.exa mple/os:1", "r.example/os:" + std::string(129, 'a')}) {
        INFO(bad);
        CHECK_FALSE(parse_reference(bad));
    }
}

TEST_CASE("credentials files: the most specific entry wins") {
    // edge:pw, other:x, hub:hub
    const std::string text = R"({"auths": {
        "r.example": {"auth": "b3RoZXI6eA=="},
        "https://r.example/edge": {"auth": "ZWRnZTpwdw=="},
        "https://index.docker.io/v1/": {"auth": "aHViOmh1Yg=="},
        "helper.example": {"identitytoken": "t"}},
        "credHelpers": {"x": "y"}})";
    auto auths = parse_auths(text, "auth.json");
    REQUIRE(auths);
    auto cred = [&](const std::string& ref) {
        auto c = find_credential(*auths, *parse_reference(ref));
        return c ? c->username + ":" + c->password : std::string("none");
    };
    CHECK(cred("r.example/edge/os:1") == "edge:pw");
    CHECK(cred("r.example/edge:1") == "edge:pw");
    CHECK(cred("r.example/other/os:1") == "other:x");
    CHECK(cred("docker.io/library/os:1") == "hub:hub");
    CHECK(cred("helper.example/os:1") == "none");
    CHECK(cred("elsewhere.example/os:1") == "none");
    CHECK(parse_auths("{}", "a")->empty());
    CHECK(parse_auths("[]", "a").error().what() == "a: not a JSON object");
    CHECK(parse_auths(R"({"auths": []})", "a").error().what() == "a: 'auths' must be an object");
    CHECK(parse_auths(R"({"auths": {"h": {"auth": "bm9jb2xvbg=="}}})", "a").error().what() ==
          "a: auths.\"h\".auth is not base64 of user:password");
}

TEST_CASE("auth challenges") {
    auto c = parse_challenge(
        R"(Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push")");
    REQUIRE(c);
    CHECK(c->scheme == "bearer");
    CHECK(c->params["realm"] == "https://auth.example/token");
    CHECK(c->params["service"] == "registry.example");
    CHECK(c->params["scope"] == "repository:a/b:pull,push");
    c = parse_challenge(R"(Basic realm="a \"quoted\" realm")");
    REQUIRE(c);
    CHECK(c->scheme == "basic");
    CHECK(c->params["realm"] == "a \"quoted\" realm");
    CHECK(parse_challenge("Negotiate abc").error().code() == ballast::Errc::unsupported);
    CHECK_FALSE(parse_challenge(R"(Bearer service="x")"));
    CHECK_FALSE(parse_challenge(R"(Bearer realm="open)"));
}

TEST_CASE("artifact manifests from a registry are checked before anything is fetched") {
    using ballast::update::oci::parse_artifact_manifest;
    const Descriptor man{"application/vnd.ballast.manifest.v1+json",
                         "sha256:" + std::string(64, 'c'), 400, "manifest.json"};
    const Descriptor sig{"application/vnd.ballast.manifest.sig.v1+cms",
                         "sha256:" + std::string(64, 'd'), 800, "manifest.json.sig"};
    const auto m = release(true);
    const auto good = nlohmann::json::parse(artifact_manifest(m, bundle_layers(m, man, sig)));
    auto layers = parse_artifact_manifest(good.dump());
    REQUIRE(layers);
    REQUIRE(layers->size() == 4);
    CHECK((*layers)[3].title == "rootfs.img");
    CHECK((*layers)[3].size == 1000);
    auto refuse = [&](auto edit, const std::string& part) {
        auto j = good;
        edit(j);
        auto r = parse_artifact_manifest(j.dump());
        REQUIRE_FALSE(r);
        INFO(r.error().what());
        CHECK(r.error().what().find(part) != std::string::npos);
    };
    using nlohmann::json;
    refuse([](json& j) { j = json::array(); }, "not a JSON object");
    refuse([](json& j) { j["schemaVersion"] = 1; }, "schemaVersion is not 2");
    refuse([](json& j) { j["mediaType"] = "application/vnd.oci.image.index.v1+json"; },
           "not an OCI image manifest");
    refuse([](json& j) { j.erase("artifactType"); }, "not a Ballast OS artifact");
    refuse([](json& j) { j["layers"] = json::object(); }, "layers must be an array");
    refuse([](json& j) { j["layers"][1]["annotations"].erase("org.opencontainers.image.title"); },
           "layer 1 of the OCI manifest has no mediaType or no title");
    refuse([](json& j) { j["layers"][2]["digest"] = "sha512:abc"; }, "has no sha256 digest");
    refuse(
        [](json& j) {
            j["layers"][2]["annotations"]["org.opencontainers.image.title"] = "rootfs.img";
        },
        "two layers of the OCI manifest are titled rootfs.img");
    CHECK_FALSE(parse_artifact_manifest(std::string((4u << 20) + 1, ' ')));
}
