// Delta downloads (issue 17): what the node already holds of an image it is offered, and the
// reader that assembles that image from local chunks and single-range fetches.
//   - The booted slot's chunks: from the index kept when that slot was written
//     (kept_index_path), else recomputed from the slot (its squashfs, chunked as the new index).
//   - The target slot's bytes already where the new image wants them (a resumed write): hashed
//     at the new index's chunk places. The first 64 KiB never count: the writer zeroes them first.
// Every chunk is re-hashed when read, local or fetched; a local chunk that no longer matches (a
// stale kept index, a slot changed since) is fetched instead, with its own range request.
#pragma once

#include <atomic>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "ballast/boot/control.hpp"
#include "ballast/core/result.hpp"
#include "ballast/update/chunk_index.hpp"
#include "ballast/update/delta_plan.hpp"
#include "ballast/update/http_stream.hpp"
#include "ballast/update/writer.hpp"

namespace ballast::update {

// What the node holds that a delta may reuse.
struct Holdings {
    std::optional<boot::SlotDevice> booted;
    std::filesystem::path booted_index;  // kept when the booted slot was written; "": none
    // The slot about to be written, when it may already hold part of this image (a write of the
    // same bundle was interrupted).
    std::optional<boot::SlotDevice> target;
};

// The indexes of what is held, and the plan made from them.
struct PreparedDelta {
    ChunkIndex want;
    std::optional<ChunkIndex> booted;  // the booted slot's chunks
    std::optional<ChunkIndex> target;  // the target's bytes at `want`'s chunk places
    DeltaPlan plan;
};

[[nodiscard]] Result<PreparedDelta> prepare_delta(ChunkIndex want, const Holdings& h,
                                                  const PlanOptions& o = {});

// What a server has shown of its range support, set by a `Fetch` as its answers come.
struct RangeSupport {
    std::atomic<bool> honoured{false};  // a range was answered with 206
    // A range was answered with the whole blob (200: a pull-through cache on a miss does) or
    // refused (416, 501): from then on the rest of the image comes in one plain stream.
    std::atomic<bool> ignored{false};
};

// The remote side of a delta: the image blob, one single range per request. Once the server
// has honoured a range, the next few are requested before they are needed (kRangesInFlight in
// all): on a high-latency link round trips, not bytes, would otherwise set the pace.
inline constexpr size_t kRangesInFlight = 4;
struct DeltaRemote {
    std::string where;  // for messages
    Fetch fetch;
    std::shared_ptr<RangeSupport> ranges;
    RetryPolicy retry;
};

// A reader over the new image, from its first byte, following `d.plan` (which must not be full).
[[nodiscard]] ImageReader delta_reader(std::shared_ptr<const PreparedDelta> d, Holdings h,
                                       DeltaRemote remote);

// Where the index of the image written into `slot` is kept, under the state folder.
[[nodiscard]] std::filesystem::path kept_index_path(const std::filesystem::path& state_dir,
                                                    boot::Slot slot);

}  // namespace ballast::update
