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

// The remote side of a delta: the image blob, one range per request.
struct DeltaRemote {
    std::string where;  // for messages
    Fetch fetch;
    // Set by `fetch` when the server answered a range with the whole blob (a pull-through cache
    // on a miss does): from then on the rest of the image comes in one stream.
    std::shared_ptr<std::atomic<bool>> ranges_ignored;
    RetryPolicy retry;
};

// A reader over the new image, from its first byte, following `d.plan` (which must not be full).
[[nodiscard]] ImageReader delta_reader(std::shared_ptr<const PreparedDelta> d, Holdings h,
                                       DeltaRemote remote);

// Where the index of the image written into `slot` is kept, under the state folder.
[[nodiscard]] std::filesystem::path kept_index_path(const std::filesystem::path& state_dir,
                                                    boot::Slot slot);

}  // namespace ballast::update
