// The chunk index: content-defined cuts (an edit moves only the chunks around it), the bounds on
// chunk lengths, the binary format round trip, every refusal of the parser; and the delta
// planner over indexes.
#include <catch2/catch.hpp>

#include <random>
#include <set>

#include "ballast/core/encoding.hpp"
#include "ballast/core/sha256.hpp"
#include "ballast/update/bundle.hpp"
#include "ballast/update/chunk_index.hpp"
#include "ballast/update/delta_plan.hpp"
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

namespace {

using ballast::update::plan_delta;
using ballast::update::PlanOptions;
using ballast::update::Seed;

// An index of chunks of `len` bytes whose ids are the given labels.
ChunkIndex labelled(const std::vector<int>& labels, uint32_t len = 1000) {
    ChunkIndex idx;
    idx.params = {100, 500, 2000};
    for (int l : labels) {
        ballast::update::Chunk c;
        c.offset = idx.image_size;
        c.length = len;
        c.sha256.fill(uint8_t(l));
        idx.chunks.push_back(c);
        idx.image_size += len;
    }
    return idx;
}

}  // namespace

TEST_CASE(
    "delta plan: what is held is copied or left in place, the rest fetched in merged ranges") {
    const auto want = labelled({1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
    // The booted slot holds 1-5 and 9-10 (at other offsets); the target holds 1 and 2 in place.
    const auto booted = labelled({0, 9, 10, 1, 2, 3, 4, 5});
    const auto target = labelled({1, 2, 99, 99});
    const Seed seeds[] = {{&target, true}, {&booted, false}};
    const auto p = plan_delta(want, seeds);
    CHECK(p.in_place == std::vector<size_t>{0, 1});
    REQUIRE(p.copies.size() == 5);  // 3, 4, 5 and 9, 10 from the booted slot
    CHECK(p.copies[0].chunk == 2);
    CHECK(p.copies[0].seed == 1);
    CHECK(p.copies[0].from == 5000);
    REQUIRE(p.fetches.size() == 1);  // 6, 7, 8 in one request
    CHECK(p.fetches[0].offset == 5000);
    CHECK(p.fetches[0].length == 3000);
    CHECK(p.fetches[0].first == 5);
    CHECK(p.fetches[0].count == 3);
    CHECK(p.fetch_bytes == 3000);
    CHECK(p.copy_bytes == 5000);
    CHECK(p.in_place_bytes == 2000);
    CHECK_FALSE(p.full);
}

TEST_CASE("delta plan: a chunk the target holds elsewhere is fetched, not copied from it") {
    const auto want = labelled({1, 2, 3});
    const auto target = labelled({3, 2, 1});  // 2 in place; 1 and 3 only at other offsets
    const Seed seeds[] = {{&target, true}};
    const auto p = plan_delta(want, seeds, PlanOptions{.merge_gap = 0, .full_above = 1.0});
    CHECK(p.in_place == std::vector<size_t>{1});
    CHECK(p.copies.empty());
    CHECK(p.fetches.size() == 2);
    CHECK(p.fetch_bytes == 2000);
}

TEST_CASE("delta plan: close neighbours are merged, bytes between them fetched too") {
    // 1 and 3 are missing, 2 between them is held: a 1000-byte gap.
    const auto want = labelled({1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
    const auto booted = labelled({2, 4, 5, 6, 7, 8, 9, 10});
    const Seed seeds[] = {{&booted, false}};
    auto p = plan_delta(want, seeds, PlanOptions{.merge_gap = 1001});
    REQUIRE(p.fetches.size() == 1);
    CHECK(p.fetches[0].count == 3);
    CHECK(p.fetch_bytes == 3000);
    CHECK(p.copies.size() == 7);  // chunk 2 comes with the fetch
    p = plan_delta(want, seeds, PlanOptions{.merge_gap = 1000});
    CHECK(p.fetches.size() == 2);
    CHECK(p.fetch_bytes == 2000);
    CHECK(p.copies.size() == 8);
}

TEST_CASE("delta plan: at most max_requests ranges, merged across the smallest gaps") {
    // Missing every other chunk, and one far gap: 1 _ 3 _ 5 _ 7 then 20.
    std::vector<int> labels;
    for (int i = 1; i <= 20; ++i)
        labels.push_back(i);
    const auto want = labelled(labels);
    std::vector<int> held;
    for (int i = 1; i <= 20; ++i)
        if (!(i == 1 || i == 3 || i == 5 || i == 7 || i == 20)) held.push_back(i);
    const auto booted = labelled(held);
    const Seed seeds[] = {{&booted, false}};
    auto p = plan_delta(want, seeds, PlanOptions{.merge_gap = 0, .max_requests = 2});
    REQUIRE(p.fetches.size() == 2);
    CHECK(p.fetches[0].first == 0);
    CHECK(p.fetches[0].count == 7);  // 1..7 with the held 2, 4, 6
    CHECK(p.fetches[1].first == 19);
    CHECK(p.fetch_bytes == 8000);
    p = plan_delta(want, seeds, PlanOptions{.merge_gap = 0, .max_requests = 256});
    CHECK(p.fetches.size() == 5);
    CHECK(p.fetch_bytes == 5000);
}

TEST_CASE("delta plan: with little held, the full download is planned") {
    const auto want = labelled({1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
    const auto booted = labelled({1, 2, 3, 4});
    const Seed seeds[] = {{&booted, false}};
    auto p = plan_delta(want, seeds);
    CHECK(p.fetch_bytes == 6000);
    CHECK(p.full);
    CHECK_FALSE(plan_delta(want, seeds, PlanOptions{.full_above = 0.7}).full);
    // Nothing held at all, no seeds.
    p = plan_delta(want, {});
    CHECK(p.fetch_bytes == want.image_size);
    CHECK(p.fetches.size() == 1);
    CHECK(p.full);
    // A chunk that occurs twice in the image (runs of zeros) is fetched where it is missing,
    // and a held one serves every place it occurs.
    const auto zeros = labelled({0, 0, 0, 1});
    const auto with_zero = labelled({0});
    const Seed z[] = {{&with_zero, false}};
    p = plan_delta(zeros, z);
    CHECK(p.copies.size() == 3);
    CHECK(p.fetch_bytes == 1000);
}

TEST_CASE("delta plan: every wanted chunk is placed exactly once, whatever the input") {
    std::mt19937 rng(7);
    for (int round = 0; round < 200; ++round) {
        auto pick = [&](size_t n) {
            std::vector<int> v(n);
            for (auto& x : v)
                x = int(rng() % 12);
            return v;
        };
        const auto want = labelled(pick(1 + rng() % 40));
        const auto booted = labelled(pick(rng() % 30));
        const auto target = labelled(pick(rng() % 30));
        const Seed seeds[] = {{&target, true}, {&booted, false}};
        const auto p = plan_delta(
            want, seeds, PlanOptions{.merge_gap = rng() % 3000, .max_requests = 1 + rng() % 5});
        std::vector<int> placed(want.chunks.size(), 0);
        for (size_t i : p.in_place)
            ++placed[i];
        for (const auto& c : p.copies)
            ++placed[c.chunk];
        uint64_t bytes = 0;
        for (const auto& f : p.fetches) {
            bytes += f.length;
            CHECK(f.offset == want.chunks[f.first].offset);
            for (size_t k = f.first; k < f.first + f.count; ++k)
                ++placed[k];
        }
        CHECK(p.fetches.size() <= 5);
        CHECK(bytes == p.fetch_bytes);
        // Never copied from the target, which is overwritten as the image is written.
        CHECK(std::all_of(p.copies.begin(), p.copies.end(),
                          [](const ballast::update::CopyOp& c) { return c.seed == 1; }));
        CHECK(std::all_of(placed.begin(), placed.end(), [](int n) { return n == 1; }));
    }
}
