// install/reset.hpp: where a LUKS2 header keeps its secrets, read from a real header
// (libcryptsetup on a sparse file) and from damaged ones.
#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "ballast/core/secret.hpp"
#include "ballast/crypt/luks.hpp"
#include "ballast/install/reset.hpp"
#include "helpers.hpp"

using namespace ballast;

namespace {

std::string head_of(const std::string& path, size_t n) {
    std::string out(n, '\0');
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    REQUIRE(::pread(fd, out.data(), n, 0) == ssize_t(n));
    ::close(fd);
    return out;
}

}  // namespace

TEST_CASE("luks2_areas: headers, keyslots area and data, from a real LUKS2 header", "[reset]") {
    test::TempDir dir;
    const std::string img = dir / "luks.img";
    {
        int fd = ::open(img.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        REQUIRE(fd >= 0);
        REQUIRE(::ftruncate(fd, 32 << 20) == 0);
        ::close(fd);
    }
    auto vk = random_secret(64);
    REQUIRE(vk);
    uint64_t data_offset = 0;
    {
        auto luks = crypt::Luks::format(img, *vk, "TEST");
        REQUIRE(luks);
        data_offset = luks->data_offset();
    }
    auto head = head_of(img, 4u << 20);
    auto a = install::luks2_areas(head);
    REQUIRE(a);
    CHECK(a->hdr_size == 16384);
    CHECK(a->data_offset == data_offset);
    CHECK(a->data_offset > 2 * a->hdr_size);

    SECTION("not LUKS") {
        CHECK(install::luks2_areas(std::string(8192, '\0')).error().code() == Errc::not_found);
        CHECK(install::luks2_areas("LUKS").error().code() == Errc::not_found);
    }
    SECTION("LUKS1 is not LUKS2") {
        auto v1 = head;
        v1[7] = 1;
        CHECK(install::luks2_areas(v1).error().code() == Errc::not_found);
    }
    SECTION("a header size the format does not allow") {
        auto bad = head;
        bad[14] = 0x50;  // 0x5000 + ...: not a power of two
        CHECK(test::contains(install::luks2_areas(bad).error().what(), "hdr_size"));
    }
    SECTION("truncated") {
        CHECK(install::luks2_areas(head.substr(0, 8192)).error().code() == Errc::parse);
    }
    SECTION("JSON area damaged") {
        auto bad = head;
        bad[4096] = '!';
        CHECK(test::contains(install::luks2_areas(bad).error().what(), "does not parse"));
    }
    SECTION("numbers that are not decimal strings, or beyond any header, are damage") {
        auto with_json = [&](const std::string& json) {
            auto h = head;
            std::fill(h.begin() + 4096, h.begin() + 16384, '\0');
            std::copy(json.begin(), json.end(), h.begin() + 4096);
            return install::luks2_areas(h);
        };
        CHECK(with_json(R"({"config":{"keyslots_size":"16744448"},"segments":{}})")->data_offset ==
              2 * 16384 + 16744448);
        CHECK(test::contains(with_json(R"({"config":{"keyslots_size":16744448}})").error().what(),
                             "keyslots_size"));
        CHECK(test::contains(
            with_json(R"({"segments":{"0":{"offset":"99999999999999999999"}}})").error().what(),
            "segments.0.offset"));
        CHECK(with_json(R"({"segments":{"0":{"offset":"2199023255552"}}})").error().code() ==
              Errc::parse);
        CHECK(with_json(R"({"segments":{"0":{"offset":"16777216x"}}})").error().code() ==
              Errc::parse);
        CHECK(with_json(R"({"segments":{}})").error().code() == Errc::parse);  // no keyslots
    }
}
