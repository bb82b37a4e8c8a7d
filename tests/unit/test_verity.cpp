// dm-verity hash trees made by crypt/verity on plain files, checked against veritysetup (the
// anchor, cryptsetup-bin) both ways: veritysetup verifies Ballast's tree with the same root
// hash, and Ballast's check finds a flipped byte in the data and in the tree.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include "ballast/core/process.hpp"
#include "ballast/crypt/verity.hpp"
#include "helpers.hpp"

using namespace ballast;
using namespace ballast::crypt;

namespace {

void write_at(const std::string& path, uint64_t off, const std::string& bytes) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    REQUIRE(::pwrite(fd, bytes.data(), bytes.size(), off_t(off)) == ssize_t(bytes.size()));
    ::close(fd);
}

std::string read_at(const std::string& path, uint64_t off, size_t n) {
    std::string out(n, '\0');
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    REQUIRE(::pread(fd, out.data(), n, off_t(off)) == ssize_t(n));
    ::close(fd);
    return out;
}

ProcessResult veritysetup(std::vector<std::string> args) {
    ProcessOptions p;
    p.argv = {"veritysetup"};
    p.argv.insert(p.argv.end(), args.begin(), args.end());
    auto r = run_process(p);
    REQUIRE(r);
    return *r;
}

}  // namespace

TEST_CASE("verity: the hash area's size", "[crypt][verity]") {
    // veritysetup's figure for 256 MiB (../shared/specs/verified-boot.md): 2,121,728 bytes.
    CHECK(verity_hash_size(65536) == 2121728);
    CHECK(verity_hash_size(1) == kVerityBlock);  // veritysetup writes the superblock only
    CHECK(verity_hash_size(128) == 2 * kVerityBlock);
    CHECK(verity_hash_size(129) == 4 * kVerityBlock);  // two leaves, one root block
}

TEST_CASE("verity: a tree Ballast writes is veritysetup's, and a flipped byte is found",
          "[crypt][verity]") {
    test::TempDir dir;
    const std::string img = dir / "slot.img";
    // 3 MiB of data that is not all zeros (a tree over zeros hides offset mistakes), then a
    // gap, then the tree.
    std::string data;
    for (int i = 0; data.size() < (3u << 20); ++i)
        data += "block " + std::to_string(i) + " of the slot image\n";
    data.resize(3u << 20);
    test::write_text(img, data);
    const uint64_t hash_offset = (3u << 20) + kVerityBlock;
    auto v = verity_format(img, data.size(), hash_offset);
    REQUIRE(v);
    CHECK(v->root_hash.size() == 64);
    CHECK(v->salt.size() == 64);
    CHECK(v->data_blocks == 768);
    CHECK(std::filesystem::file_size(img) == hash_offset + verity_hash_size(768));
    // A second format has another salt and so another root hash.
    const std::string img2 = dir / "slot2.img";
    test::write_text(img2, data);
    auto v2 = verity_format(img2, data.size(), hash_offset);
    REQUIRE(v2);
    CHECK(v2->salt != v->salt);
    CHECK(v2->root_hash != v->root_hash);

    // The anchor reads Ballast's superblock and tree.
    auto ok = veritysetup(
        {"verify", img, img, v->root_hash, "--hash-offset", std::to_string(hash_offset)});
    CHECK(ok.success());
    const auto dump = veritysetup({"dump", img, "--hash-offset", std::to_string(hash_offset)});
    CHECK(test::contains(dump.out, v->uuid));
    const auto line = dump.out.substr(dump.out.find("Data blocks:"), 40);
    CHECK(line.substr(0, line.find('\n')).ends_with("\t768"));
    CHECK(test::contains(dump.out, v->salt));
    REQUIRE(verity_verify(img, *v));

    // The wrong root hash, salt or size: refused.
    auto wrong = *v;
    wrong.root_hash = v2->root_hash;
    auto r = verity_verify(img, wrong);
    REQUIRE_FALSE(r);
    CHECK(test::contains(r.error().message(), "does not match its verity root hash"));
    CHECK(r.error().code() == Errc::verification);
    wrong = *v;
    wrong.salt = v2->salt;
    CHECK_FALSE(verity_verify(img, wrong));
    wrong = *v;
    wrong.data_blocks = 767;
    CHECK_FALSE(verity_verify(img, wrong));
    for (auto bad : {std::string("zz"), std::string(63, 'a'), std::string()}) {
        wrong = *v;
        wrong.root_hash = bad;
        r = verity_verify(img, wrong);
        REQUIRE_FALSE(r);
        CHECK(r.error().code() == Errc::invalid_argument);
    }

    // A byte flipped in the data, then one in the tree (after putting the data back): both
    // found by Ballast and by the anchor.
    for (uint64_t at : {uint64_t(12345), hash_offset + kVerityBlock + 100}) {
        const auto was = read_at(img, at, 1);
        write_at(img, at, std::string(1, char(was[0] ^ 0x40)));
        r = verity_verify(img, *v);
        REQUIRE_FALSE(r);
        CHECK(r.error().code() == Errc::verification);
        CHECK_FALSE(veritysetup({"verify", img, img, v->root_hash, "--hash-offset",
                                 std::to_string(hash_offset)})
                        .success());
        write_at(img, at, was);
        CHECK(verity_verify(img, *v));
    }
    // The superblock is not trusted: damaged, the check still passes on the manifest's values.
    write_at(img, hash_offset, std::string(512, '\xff'));
    CHECK(verity_verify(img, *v));
}

TEST_CASE("verity: bad layouts are refused before anything is written", "[crypt][verity]") {
    test::TempDir dir;
    const std::string img = dir / "x.img";
    test::write_text(img, std::string(8192, 'x'));
    for (auto [size, offset] :
         {std::pair<uint64_t, uint64_t>{0, 8192}, {4000, 8192}, {8192, 4096}, {8192, 8193}}) {
        auto r = verity_format(img, size, offset);
        REQUIRE_FALSE(r);
        CHECK(r.error().code() == Errc::invalid_argument);
    }
    CHECK(std::filesystem::file_size(img) == 8192);
    CHECK_FALSE(verity_format(dir / "missing.img", 8192, 8192));
}
