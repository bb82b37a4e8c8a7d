// The chunk index: content-defined cuts (an edit moves only the chunks around it), the bounds on
// chunk lengths, the binary format round trip, and every refusal of the parser.
#include <catch2/catch.hpp>

#include <random>
#include <set>

#include "ballast/core/encoding.hpp"
#include "ballast/core/sha256.hpp"
#include "ballast/update/bundle.hpp"
#include "ballast/update/chunk_index.hpp"
#include "helpers.hpp"

// Named one by one: the unit tests build in unity groups, where a using-directive would reach
// the files compiled after this one.
using ballast::Result;
using ballast::sha256_hex;
using ballast::to_hex;
using ballast::test::TempDir;
using ballast::test::write_text;
using ballast::update::build_index;
using ballast::update::check_params;
using ballast::update::Checked;
using ballast::update::Chunker;
using ballast::update::ChunkIndex;
using ballast::update::ChunkParams;
using ballast::update::kIndexEntrySize;
using ballast::update::kIndexHeaderSize;
using ballast::update::kMaxIndexSize;
using ballast::update::parse_index;
using ballast::update::serialize_index;
using ballast::update::verify_image;

namespace {

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<uint8_t> v(n);
    for (auto& b : v)
        b = uint8_t(rng());
    return v;
}

ChunkIndex index_of(const std::vector<uint8_t>& data, const ChunkParams& p = {}) {
    auto idx = build_index(
        data.size(),
        [&](uint64_t off, uint8_t* buf, size_t n) -> Result<size_t> {
            n = std::min<size_t>(n, data.size() - size_t(off));
            std::copy_n(data.begin() + long(off), n, buf);
            return n;
        },
        p);
    REQUIRE(idx);
    return *idx;
}

std::set<std::string> ids(const ChunkIndex& idx) {
    std::set<std::string> out;
    for (const auto& c : idx.chunks)
        out.insert(to_hex(c.sha256));
    return out;
}

}  // namespace

TEST_CASE("chunks have bounded lengths, cover the image and average near the target") {
    const auto data = random_bytes(8u << 20, 1);
    const auto idx = index_of(data);
    REQUIRE(idx.image_size == data.size());
    uint64_t off = 0;
    for (size_t i = 0; i < idx.chunks.size(); ++i) {
        const auto& c = idx.chunks[i];
        CHECK(c.offset == off);
        CHECK(c.length <= idx.params.max);
        if (i + 1 < idx.chunks.size()) CHECK(c.length >= idx.params.min);
        off += c.length;
    }
    CHECK(off == data.size());
    const double avg = double(data.size()) / double(idx.chunks.size());
    CHECK(avg > 12 * 1024);
    CHECK(avg < 20 * 1024);
}

TEST_CASE("cut points do not depend on how the stream is fed") {
    const auto data = random_bytes(1u << 20, 2);
    const auto whole = index_of(data);
    // Fed 1000 bytes at a time.
    Chunker ch({});
    std::vector<uint64_t> cuts;
    uint64_t pos = 0;
    for (size_t at = 0; at < data.size(); at += 1000) {
        std::span<const uint8_t> rest(data.data() + at, std::min<size_t>(1000, data.size() - at));
        while (!rest.empty()) {
            const size_t n = ch.scan(rest);
            pos += n;
            rest = rest.subspan(n);
            if (ch.cut()) cuts.push_back(pos);
        }
    }
    std::vector<uint64_t> want;
    for (const auto& c : whole.chunks)
        want.push_back(c.offset + c.length);
    if (!want.empty() && want.back() == data.size() && (cuts.empty() || cuts.back() != pos))
        want.pop_back();  // the last chunk ends at the end of the data, not at a cut
    CHECK(cuts == want);
}

TEST_CASE("an insertion changes only the chunks next to it") {
    auto data = random_bytes(4u << 20, 3);
    const auto before = index_of(data);
    data.insert(data.begin() + (2 << 20), {'n', 'e', 'w', ' ', 'b', 'y', 't', 'e', 's'});
    const auto after = index_of(data);
    const auto a = ids(before), b = ids(after);
    size_t shared = 0;
    for (const auto& id : b)
        shared += a.count(id);
    // One or two chunks around the edit differ; the rest are found again.
    CHECK(after.chunks.size() - shared <= 3);
    CHECK(shared + 3 >= before.chunks.size());
}

TEST_CASE("runs of zeros are cut at the maximum length and share one id") {
    const std::vector<uint8_t> zeros(1u << 20, 0);
    const auto idx = index_of(zeros);
    CHECK(idx.chunks.size() == 16);
    CHECK(ids(idx).size() == 1);
}

TEST_CASE("the index round-trips through its file format") {
    const auto data = random_bytes(300000, 4);
    const ChunkParams small{1024, 4096, 16384};
    const auto idx = index_of(data, small);
    const auto bytes = serialize_index(idx);
    CHECK(bytes.size() == kIndexHeaderSize + idx.chunks.size() * kIndexEntrySize);
    auto back = parse_index(bytes, "rootfs.bcidx");
    REQUIRE(back);
    CHECK(back->params == small);
    CHECK(back->image_size == idx.image_size);
    REQUIRE(back->chunks.size() == idx.chunks.size());
    for (size_t i = 0; i < idx.chunks.size(); ++i) {
        CHECK(back->chunks[i].offset == idx.chunks[i].offset);
        CHECK(back->chunks[i].length == idx.chunks[i].length);
        CHECK(back->chunks[i].sha256 == idx.chunks[i].sha256);
    }
}

TEST_CASE("bad chunk sizes are refused") {
    for (const ChunkParams p : {ChunkParams{32, 64, 128}, ChunkParams{4096, 2048, 8192},
                                ChunkParams{4096, 4096, 4096}, ChunkParams{4096, 8192, 32u << 20}})
        CHECK(!check_params(p));
    auto r = build_index(
        10, [](uint64_t, uint8_t*, size_t) -> Result<size_t> { return 0; },
        ChunkParams{4096, 2048, 8192});
    REQUIRE(!r);
    CHECK(r.error().what().find("min <= avg") != std::string::npos);
}

TEST_CASE("an image shorter than promised is an error") {
    auto r = build_index(100000, [](uint64_t off, uint8_t*, size_t n) -> Result<size_t> {
        return off < 50000 ? std::min<size_t>(n, 50000) : 0;
    });
    REQUIRE(!r);
    CHECK(r.error().what() == "the image ended at 50000 bytes, 100000 were expected");
}

TEST_CASE("the index parser refuses every malformed file") {
    const auto idx = index_of(random_bytes(200000, 5), ChunkParams{1024, 4096, 16384});
    const std::string good = serialize_index(idx);
    REQUIRE(parse_index(good, "i"));
    auto refuse = [](const std::string& bytes, const std::string& part) {
        auto r = parse_index(bytes, "i");
        REQUIRE(!r);
        INFO(r.error().what());
        CHECK(r.error().what().find(part) != std::string::npos);
    };
    auto put32 = [](std::string b, size_t off, uint32_t v) {
        for (int i = 0; i < 4; ++i)
            b[off + size_t(i)] = char((v >> (8 * i)) & 0xff);
        return b;
    };
    auto put64 = [](std::string b, size_t off, uint64_t v) {
        for (int i = 0; i < 8; ++i)
            b[off + size_t(i)] = char((v >> (8 * i)) & 0xff);
        return b;
    };
    refuse("", "bad magic");
    refuse(good.substr(0, 40), "bad magic");
    refuse("X" + good.substr(1), "bad magic");
    refuse(put32(good, 8, 2), "index version 2 is not supported");
    refuse(put32(good, 12, 7), "chunk hash 7");
    refuse(put32(good, 16, 9), "chunker 9");
    refuse(put32(good, 20, 8), "must satisfy");
    refuse(good.substr(0, good.size() - 1), "do not fit");
    refuse(good + std::string(36, '\0'), "do not fit");
    refuse(put64(good, 40, ~uint64_t(0)), "do not fit");
    refuse(put64(good, 32, 0), "empty image");
    refuse(put64(good, 32, idx.image_size + 1), "cover");
    refuse(put64(good, 32, idx.image_size - 1), "run past");
    refuse(put32(good, kIndexHeaderSize, 0), "chunk 0 is 0 bytes");
    refuse(put32(good, kIndexHeaderSize, 100), "chunk 0 is 100 bytes");
    refuse(put32(good, kIndexHeaderSize, 20000), "chunk 0 is 20000 bytes");
    refuse(std::string(kMaxIndexSize + 1, 'B'), "more than");
}

TEST_CASE("verifying an image against its index names the chunk that differs") {
    TempDir t;
    const auto data = random_bytes(200000, 6);
    write_text(t.path() / "img", std::string(data.begin(), data.end()));
    auto idx = index_of(data, ChunkParams{1024, 4096, 16384});
    REQUIRE(idx.chunks.size() > 3);
    Checked c;
    c.image = {(t.path() / "img").string(), 0, data.size()};
    c.manifest.image.size = data.size();
    c.manifest.image.sha256 =
        *sha256_hex(std::string_view(reinterpret_cast<const char*>(data.data()), data.size()));
    CHECK(verify_image(c, {}, &idx));
    idx.chunks[2].sha256[0] ^= 1;
    auto r = verify_image(c, {}, &idx);
    REQUIRE_FALSE(r);
    CHECK(r.error().what() == fmt::format("the chunk index does not describe the image (chunk 2, "
                                          "bytes {}..{} differs)",
                                          idx.chunks[2].offset,
                                          idx.chunks[2].offset + idx.chunks[2].length));
    c.manifest.image.sha256 = std::string(64, '0');
    r = verify_image(c, {}, &idx);
    REQUIRE_FALSE(r);
    CHECK(r.error().what().find("(first difference in chunk 2, bytes") != std::string::npos);
}
