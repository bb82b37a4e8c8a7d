#include "ballast/update/delta_plan.hpp"

#include <algorithm>
#include <cstring>
#include <unordered_map>

namespace ballast::update {
namespace {

struct IdHash {
    size_t operator()(const ChunkId& id) const noexcept {
        size_t h;
        std::memcpy(&h, id.data(), sizeof h);  // a SHA-256 is already well mixed
        return h;
    }
};

struct Where {
    size_t seed;
    uint64_t offset;
    uint32_t length;
};

}  // namespace

DeltaPlan plan_delta(const ChunkIndex& want, std::span<const Seed> seeds, const PlanOptions& o) {
    DeltaPlan plan;
    // Every chunk a seed holds, by id: the first place found wins (seeds in the caller's order).
    // Never the target's: it is overwritten in image order, so a chunk read from it elsewhere
    // than its own place could already be gone.
    std::unordered_map<ChunkId, Where, IdHash> held;
    for (size_t s = 0; s < seeds.size(); ++s)
        if (!seeds[s].is_target)
            for (const auto& c : seeds[s].index->chunks)
                held.emplace(c.sha256, Where{s, c.offset, c.length});
    // The target's chunks by offset, for "already in place".
    std::unordered_map<uint64_t, const Chunk*> target_at;
    for (const auto& s : seeds)
        if (s.is_target)
            for (const auto& c : s.index->chunks)
                target_at.emplace(c.offset, &c);

    std::vector<size_t> missing;
    for (size_t i = 0; i < want.chunks.size(); ++i) {
        const auto& c = want.chunks[i];
        if (auto t = target_at.find(c.offset); t != target_at.end() &&
                                               t->second->sha256 == c.sha256 &&
                                               t->second->length == c.length) {
            plan.in_place.push_back(i);
            plan.in_place_bytes += c.length;
            continue;
        }
        if (auto h = held.find(c.sha256); h != held.end() && h->second.length == c.length) {
            plan.copies.push_back({i, h->second.seed, h->second.offset});
            plan.copy_bytes += c.length;
            continue;
        }
        missing.push_back(i);
    }

    // Runs of missing chunks as ranges; neighbours closer than merge_gap become one.
    for (size_t i : missing) {
        const auto& c = want.chunks[i];
        if (!plan.fetches.empty()) {
            auto& last = plan.fetches.back();
            if (c.offset - (last.offset + last.length) < o.merge_gap) {
                last.length = c.offset + c.length - last.offset;
                last.count = i + 1 - last.first;
                continue;
            }
        }
        plan.fetches.push_back({c.offset, c.length, i, 1});
    }
    // Too many requests: merge across the smallest gaps.
    if (plan.fetches.size() > o.max_requests && o.max_requests > 0) {
        std::vector<uint64_t> gaps;
        for (size_t k = 1; k < plan.fetches.size(); ++k)
            gaps.push_back(plan.fetches[k].offset -
                           (plan.fetches[k - 1].offset + plan.fetches[k - 1].length));
        std::vector<uint64_t> sorted = gaps;
        const size_t merges = plan.fetches.size() - o.max_requests;
        std::nth_element(sorted.begin(), sorted.begin() + long(merges - 1), sorted.end());
        const uint64_t cut = sorted[merges - 1];
        // Gaps below the cut are merged, and as many equal to it as still needed.
        size_t equal_left = merges - size_t(std::count_if(gaps.begin(), gaps.end(),
                                                          [&](uint64_t g) { return g < cut; }));
        std::vector<FetchRange> merged{plan.fetches[0]};
        for (size_t k = 1; k < plan.fetches.size(); ++k) {
            const uint64_t g = gaps[k - 1];
            const bool merge = g < cut || (g == cut && equal_left > 0);
            if (g == cut && merge) --equal_left;
            if (merge) {
                auto& last = merged.back();
                const auto& f = plan.fetches[k];
                last.length = f.offset + f.length - last.offset;
                last.count = f.first + f.count - last.first;
            } else {
                merged.push_back(plan.fetches[k]);
            }
        }
        plan.fetches = std::move(merged);
    }
    // Chunks inside a fetched range come with it: no copy, no in-place skip for them.
    auto fetched = [&](size_t chunk) {
        auto it = std::upper_bound(plan.fetches.begin(), plan.fetches.end(), chunk,
                                   [](size_t c, const FetchRange& f) { return c < f.first; });
        return it != plan.fetches.begin() && chunk < std::prev(it)->first + std::prev(it)->count;
    };
    std::erase_if(plan.copies, [&](const CopyOp& op) { return fetched(op.chunk); });
    std::erase_if(plan.in_place, [&](size_t i) { return fetched(i); });
    plan.copy_bytes = plan.in_place_bytes = 0;
    for (const auto& op : plan.copies)
        plan.copy_bytes += want.chunks[op.chunk].length;
    for (size_t i : plan.in_place)
        plan.in_place_bytes += want.chunks[i].length;
    for (const auto& f : plan.fetches)
        plan.fetch_bytes += f.length;
    plan.full = double(plan.fetch_bytes) > o.full_above * double(want.image_size);
    return plan;
}

}  // namespace ballast::update
