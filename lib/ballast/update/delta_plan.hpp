// The delta planner (pure): which chunks of the image to be written are already where they belong
// in the target slot, which can be copied from a slot the node holds, and which must be fetched,
// as single-range requests on the image blob. No I/O: indexes in, a plan out. The executor
// re-hashes every chunk it copies or fetches before writing it (issue 17).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "ballast/update/chunk_index.hpp"

namespace ballast::update {

// Chunks a node already holds: the index of what one of its slots contains.
struct Seed {
    const ChunkIndex* index = nullptr;
    // The slot being written: a chunk found here at the offset where the new image wants it is
    // left in place (a resumed upgrade, or a release that changed little).
    bool is_target = false;
};

struct PlanOptions {
    // Neighbouring fetches closer than this are one request (the bytes between are fetched too:
    // cheaper than a round trip).
    uint64_t merge_gap = 4096;
    // At most this many requests: the smallest gaps are merged until it holds.
    size_t max_requests = 256;
    // Above this share of the image to fetch, the plain streamed download is planned instead.
    double full_above = 0.5;
};

struct CopyOp {
    size_t chunk = 0;   // in the wanted index
    size_t seed = 0;    // which seed holds it
    uint64_t from = 0;  // its offset in that seed's slot
};

struct FetchRange {
    uint64_t offset = 0, length = 0;  // in the image blob
    size_t first = 0, count = 0;      // the wanted chunks it covers
};

struct DeltaPlan {
    std::vector<size_t> in_place;  // wanted chunks already in the target at their offset
    std::vector<CopyOp> copies;    // from a seed, then re-hashed
    std::vector<FetchRange> fetches;
    uint64_t in_place_bytes = 0, copy_bytes = 0, fetch_bytes = 0;
    bool full = false;  // fetch everything with the streamed download instead
};

[[nodiscard]] DeltaPlan plan_delta(const ChunkIndex& want, std::span<const Seed> seeds,
                                   const PlanOptions& o = {});

}  // namespace ballast::update
