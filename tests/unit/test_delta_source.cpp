// Delta downloads against real slot files: the booted slot's chunks (recomputed, or from a kept
// index that still describes the slot), the target's chunks already in place, and the reader
// that rebuilds the image from them and from ranges of a remote blob (served from memory here),
// checking every chunk.
#include <catch2/catch.hpp>

#include <fstream>
#include <random>
#include <thread>

#include "ballast/core/atomic_file.hpp"
#include "ballast/update/delta_source.hpp"
#include "helpers.hpp"

using ballast::Result;
using ballast::Status;
using ballast::test::TempDir;
using ballast::update::ChunkIndex;
using ballast::update::delta_reader;
using ballast::update::DeltaRemote;
using ballast::update::Holdings;
using ballast::update::prepare_delta;
using ballast::update::PreparedDelta;

namespace {

constexpr size_t kSize = 2u << 20;

// A stand-in for a squashfs image: its magic, and bytes_used at offset 40 (all the node reads).
std::string fake_squashfs(uint32_t seed) {
    std::mt19937 rng(seed);
    std::string s(kSize, '\0');
    for (auto& c : s)
        c = char(rng());
    std::memcpy(s.data(), "hsqs", 4);
    for (int i = 0; i < 8; ++i)
        s[40 + size_t(i)] = char((uint64_t(kSize) >> (8 * i)) & 0xff);
    return s;
}

// v1 with two regions rewritten: what a small release changes.
std::string next_release(const std::string& v1) {
    std::string v2 = v1;
    std::mt19937 rng(99);
    for (size_t i = 700000; i < 720000; ++i)
        v2[i] = char(rng());
    for (size_t i = 1500000; i < 1504096; ++i)
        v2[i] = char(rng());
    return v2;
}

ChunkIndex index_of(const std::string& data) {
    auto idx = ballast::update::build_index(
        data.size(), [&](uint64_t off, uint8_t* buf, size_t n) -> Result<size_t> {
            n = std::min<size_t>(n, data.size() - size_t(off));
            std::memcpy(buf, data.data() + off, n);
            return n;
        });
    REQUIRE(idx);
    return *idx;
}

// A slot: `content` at byte 4096 of a file twice its size.
ballast::boot::SlotDevice slot_file(const std::filesystem::path& path, const std::string& content) {
    std::string file(4096 + 2 * kSize, '\0');
    std::memcpy(file.data() + 4096, content.data(), content.size());
    REQUIRE(ballast::write_file_atomic(path, file));
    return {path.string(), 4096, 2 * kSize};
}

// The image blob, served by range from memory (requests may come from several threads); counts
// requests, bytes and how many were in flight at once; can lie.
struct Blob {
    std::string bytes;
    std::atomic<int> requests{0}, active{0}, most_active{0};
    std::atomic<uint64_t> sent{0};
    bool corrupt = false;
    bool refuse_ranges = false;  // a server that answers ranges with 416
    std::shared_ptr<ballast::update::RangeSupport> ranges =
        std::make_shared<ballast::update::RangeSupport>();
    DeltaRemote remote() {
        DeltaRemote r;
        r.where = "blob";
        r.fetch = [this](uint64_t from, uint64_t length,
                         const std::function<Status(std::span<const char>)>& sink) -> Status {
            ++requests;
            const bool ranged = from > 0 || length < bytes.size();
            if (refuse_ranges && ranged) {
                ranges->ignored.store(true);
                return ballast::fail(ballast::Errc::unsupported, "HTTP 416 to a range request");
            }
            // Once ranges are known to work, a request waits (at most 2 s) for another to be in
            // flight beside it: the reader must have asked for the next ranges ahead.
            const bool known = ranges->honoured.load();
            const int now = ++active;
            for (int m = most_active.load(); now > m && !most_active.compare_exchange_weak(m, now);)
                ;
            for (int i = 0; known && most_active.load() < 2 && i < 200; ++i)
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
            if (ranged) ranges->honoured.store(true);
            sent += length;
            std::string part = bytes.substr(size_t(from), size_t(length));
            if (corrupt) part[part.size() / 2] ^= 1;
            Status st = sink(part);
            --active;
            return st;
        };
        r.ranges = ranges;
        r.retry = {0, std::chrono::milliseconds(1)};
        return r;
    }
};

Result<std::string> read_all(std::shared_ptr<const PreparedDelta> d, const Holdings& h,
                             Blob& blob) {
    auto reader = delta_reader(std::move(d), h, blob.remote());
    std::string out;
    char buf[100000];
    for (;;) {
        const size_t n = BALLAST_TRY(reader(reinterpret_cast<uint8_t*>(buf), sizeof buf));
        if (n == 0) return out;
        out.append(buf, n);
    }
}

}  // namespace

TEST_CASE("delta source: the booted slot's chunks are copied, the changed ones fetched") {
    TempDir dir;
    const auto v1 = fake_squashfs(1), v2 = next_release(v1);
    Holdings h;
    h.booted = slot_file(dir / "a.img", v1);
    auto d = prepare_delta(index_of(v2), h);
    REQUIRE(d);
    CHECK_FALSE(d->plan.full);
    CHECK(d->plan.fetch_bytes < 200000);
    CHECK(d->plan.copy_bytes + d->plan.fetch_bytes >= kSize);
    Blob blob{v2};
    auto got = read_all(std::make_shared<PreparedDelta>(*d), h, blob);
    REQUIRE(got);
    CHECK(*got == v2);
    CHECK(blob.sent == d->plan.fetch_bytes);
    CHECK(size_t(blob.requests) == d->plan.fetches.size());
}

TEST_CASE(
    "delta source: a kept index is used while it describes the slot; a changed chunk is "
    "fetched alone") {
    TempDir dir;
    const auto v1 = fake_squashfs(1), v2 = next_release(v1);
    const auto want = index_of(v2);
    Holdings h;
    h.booted = slot_file(dir / "a.img", v1);
    h.booted_index = dir / "A.bcidx";
    const auto recomputed = prepare_delta(want, h);
    REQUIRE(recomputed);
    REQUIRE(
        ballast::write_file_atomic(h.booted_index, ballast::update::serialize_index(index_of(v1))));
    // A byte in the middle of the slot changes after its index was kept: the kept index still
    // matches at both ends, so it is used, and that chunk is found wrong only when read.
    {
        std::fstream f(h.booted->path, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(4096 + 300000);
        f.put('\x5a' ^ v1[300000]);
    }
    auto d = prepare_delta(want, h);
    REQUIRE(d);
    CHECK(d->plan.copy_bytes == recomputed->plan.copy_bytes);  // planned as held
    Blob blob{v2};
    auto got = read_all(std::make_shared<PreparedDelta>(*d), h, blob);
    REQUIRE(got);
    CHECK(*got == v2);
    CHECK(size_t(blob.requests) == d->plan.fetches.size() + 1);

    SECTION("an index kept for another image is not used") {
        REQUIRE(ballast::write_file_atomic(
            h.booted_index, ballast::update::serialize_index(index_of(fake_squashfs(7)))));
        auto fresh = prepare_delta(want, h);
        REQUIRE(fresh);
        // Recomputed from the slot as it is now: the changed chunk is planned as a fetch.
        CHECK(fresh->plan.copy_bytes < recomputed->plan.copy_bytes);
        Blob b2{v2};
        auto again = read_all(std::make_shared<PreparedDelta>(*fresh), h, b2);
        REQUIRE(again);
        CHECK(*again == v2);
        CHECK(size_t(b2.requests) == fresh->plan.fetches.size());
    }
    SECTION("an unreadable kept index is not used") {
        REQUIRE(ballast::write_file_atomic(h.booted_index, "not an index"));
        auto fresh = prepare_delta(want, h);
        REQUIRE(fresh);
        CHECK(fresh->plan.copy_bytes < recomputed->plan.copy_bytes);
    }
}

TEST_CASE(
    "delta source: what an interrupted write left in the target stays in place, never in "
    "the first 64 KiB") {
    TempDir dir;
    const auto v2 = next_release(fake_squashfs(1));
    // The write reached 1 MiB before it was cut; the first 64 KiB were zeroed before it began.
    std::string partial = v2.substr(0, 1u << 20);
    std::fill(partial.begin(), partial.begin() + 65536, '\0');
    Holdings h;
    h.target = slot_file(dir / "b.img", partial);
    const auto want = index_of(v2);
    auto d = prepare_delta(want, h, {.full_above = 1.0});
    REQUIRE(d);
    CHECK(d->plan.in_place_bytes > 800000);
    CHECK(d->plan.copies.empty());
    for (size_t i : d->plan.in_place)
        CHECK(want.chunks[i].offset >= 65536);
    Blob blob{v2};
    auto got = read_all(std::make_shared<PreparedDelta>(*d), h, blob);
    REQUIRE(got);
    CHECK(*got == v2);
    CHECK(blob.sent == d->plan.fetch_bytes);
}

TEST_CASE("delta source: a slot with no squashfs is no seed; a lying registry is refused") {
    TempDir dir;
    const auto v1 = fake_squashfs(1), v2 = next_release(v1);
    Holdings h;
    h.booted = slot_file(dir / "a.img", std::string(kSize, 'x'));
    auto none = prepare_delta(index_of(v2), h);
    REQUIRE(none);
    CHECK_FALSE(none->booted);
    CHECK(none->plan.full);

    h.booted = slot_file(dir / "a.img", v1);
    auto d = prepare_delta(index_of(v2), h);
    REQUIRE(d);
    Blob blob{v2};
    blob.corrupt = true;
    auto got = read_all(std::make_shared<PreparedDelta>(*d), h, blob);
    REQUIRE_FALSE(got);
    CHECK(got.error().code() == ballast::Errc::verification);
    CHECK_THAT(got.error().what(),
               Catch::Contains("from the registry does not match the signed chunk index"));
}

TEST_CASE("delta source: a server that refuses ranges gets one plain request for the whole blob") {
    TempDir dir;
    const auto v1 = fake_squashfs(1), v2 = next_release(v1);
    Holdings h;
    h.booted = slot_file(dir / "a.img", v1);
    auto d = prepare_delta(index_of(v2), h);
    REQUIRE(d);
    Blob blob{v2};
    blob.refuse_ranges = true;
    auto got = read_all(std::make_shared<PreparedDelta>(*d), h, blob);
    REQUIRE(got);
    CHECK(*got == v2);
    CHECK(blob.requests == 2);  // the refused range, then the whole blob
    CHECK(blob.sent == v2.size());
}

TEST_CASE("delta source: once the server honours ranges, the next ones are asked for ahead") {
    TempDir dir;
    const auto v1 = fake_squashfs(1);
    std::string v2 = v1;  // eight changes far apart: eight ranges
    std::mt19937 rng(5);
    for (size_t at = 200000; at < 1800000; at += 200000)
        for (size_t i = at; i < at + 3000; ++i)
            v2[i] = char(rng());
    Holdings h;
    h.booted = slot_file(dir / "a.img", v1);
    auto d = prepare_delta(index_of(v2), h);
    REQUIRE(d);
    REQUIRE(d->plan.fetches.size() >= 4);
    Blob blob{v2};
    auto got = read_all(std::make_shared<PreparedDelta>(*d), h, blob);
    REQUIRE(got);
    CHECK(*got == v2);
    CHECK(size_t(blob.requests) == d->plan.fetches.size());  // each range asked for once
    CHECK(blob.most_active >= 2);
    CHECK(blob.most_active <= int(ballast::update::kRangesInFlight));
}

TEST_CASE(
    "delta source: a local chunk gone stale, and a server that refuses ranges: the rest of "
    "the image in one stream") {
    TempDir dir;
    const auto v1 = fake_squashfs(1), v2 = next_release(v1);
    Holdings h;
    h.booted = slot_file(dir / "a.img", v1);
    h.booted_index = dir / "A.bcidx";
    REQUIRE(
        ballast::write_file_atomic(h.booted_index, ballast::update::serialize_index(index_of(v1))));
    {
        std::fstream f(h.booted->path, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(4096 + 300000);
        f.put('\x5a' ^ v1[300000]);
    }
    auto d = prepare_delta(index_of(v2), h);
    REQUIRE(d);
    Blob blob{v2};
    blob.refuse_ranges = true;
    auto got = read_all(std::make_shared<PreparedDelta>(*d), h, blob);
    REQUIRE(got);
    CHECK(*got == v2);
    CHECK(blob.requests == 2);  // the stale chunk's range, refused; then the whole blob
}
