#include "ballast/update/delta_source.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <deque>

#include <spdlog/spdlog.h>

#include "ballast/core/atomic_file.hpp"
#include "ballast/core/bytes.hpp"
#include "ballast/core/fd.hpp"
#include "ballast/core/sha256.hpp"

namespace ballast::update {
namespace {

Status pread_exact(int fd, char* buf, size_t n, uint64_t off, const std::string& what) {
    for (size_t done = 0; done < n;) {
        const ssize_t r = ::pread(fd, buf + done, n - done, off_t(off + done));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return fail_errno(errno, what);
        if (r == 0) return fail(Errc::io, "{}: unexpected end at byte {}", what, off + done);
        done += size_t(r);
    }
    return {};
}

// The length of the squashfs a slot holds (its superblock's bytes_used, padded to 4 KiB as
// mksquashfs pads the file that was published and chunked); nothing if it holds none.
std::optional<uint64_t> squashfs_length(const boot::SlotDevice& slot) {
    UniqueFd fd(::open(slot.path.c_str(), O_RDONLY | O_CLOEXEC));
    char sb[48];
    if (!fd || ::pread(fd.get(), sb, sizeof sb, off_t(slot.start)) != ssize_t(sizeof sb) ||
        std::memcmp(sb, "hsqs", 4) != 0)
        return std::nullopt;
    const uint64_t used = le64(std::string_view(sb, sizeof sb), 40);
    if (used == 0) return std::nullopt;
    return std::min<uint64_t>((used + 4095) / 4096 * 4096, slot.size);
}

// A kept index still describes the slot if its first and last chunks do: a squashfs's
// superblock (with its build time) is in the first, its tables in the last.
bool ends_match(const boot::SlotDevice& slot, const ChunkIndex& idx) {
    if (idx.chunks.empty()) return false;
    UniqueFd fd(::open(slot.path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return false;
    std::string buf;
    for (const auto* c : {&idx.chunks.front(), &idx.chunks.back()}) {
        buf.resize(c->length);
        if (!pread_exact(fd.get(), buf.data(), c->length, slot.start + c->offset, slot.path))
            return false;
        const auto got = sha256_digest(buf);
        if (!got || *got != c->sha256) return false;
    }
    return true;
}

// The booted slot's chunks: the kept index when it still describes the slot and was cut as the
// new one, else the slot chunked afresh.
std::optional<ChunkIndex> booted_chunks(const Holdings& h, const ChunkParams& p) {
    const auto length = squashfs_length(*h.booted);
    if (!length) {
        spdlog::info("delta: the booted slot holds no squashfs to reuse");
        return std::nullopt;
    }
    if (!h.booted_index.empty()) {
        std::error_code ec;
        if (std::filesystem::exists(h.booted_index, ec)) {
            auto bytes = read_file(h.booted_index, kMaxIndexSize);
            auto kept = bytes ? parse_index(*bytes, h.booted_index.string())
                              : Result<ChunkIndex>(std::unexpected(bytes.error()));
            if (kept && kept->params == p && kept->image_size == *length &&
                ends_match(*h.booted, *kept))
                return std::move(*kept);
            if (!kept)
                spdlog::info("delta: {}; indexing the booted slot", kept.error().what());
            else
                spdlog::info(
                    "delta: the kept index {} describes another image or was cut "
                    "differently; indexing the booted slot",
                    h.booted_index.string());
        }
    }
    auto idx = index_file(h.booted->path, h.booted->start, *length, p);
    if (!idx) {
        spdlog::warn("delta: indexing the booted slot: {}", idx.error().what());
        return std::nullopt;
    }
    return std::move(*idx);
}

// The target's bytes at each of `want`'s chunk places, as an index the planner can match by
// offset. Places in the first 64 KiB (zeroed before the write) or past the slot get length 0,
// which matches nothing.
Result<ChunkIndex> target_places(const boot::SlotDevice& t, const ChunkIndex& want) {
    ChunkIndex out;
    out.params = want.params;
    out.image_size = want.image_size;
    out.chunks = want.chunks;
    UniqueFd fd(::open(t.path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return fail_errno(errno, t.path);
    std::string buf;
    for (auto& c : out.chunks) {
        if (c.offset < kHeaderSize || c.offset + c.length > t.size) {
            c.length = 0;
            continue;
        }
        buf.resize(c.length);
        BALLAST_TRY(pread_exact(fd.get(), buf.data(), c.length, t.start + c.offset, t.path));
        c.sha256 = BALLAST_TRY(sha256_digest(buf));
    }
    return out;
}

// The new image, chunk by chunk, as the plan says.
class DeltaReader {
  public:
    DeltaReader(std::shared_ptr<const PreparedDelta> d, Holdings h, DeltaRemote remote)
        : d_(std::move(d)),
          h_(std::move(h)),
          r_(std::move(remote)),
          local_(d_->want.chunks.size()) {
        for (const auto& c : d_->plan.copies)
            local_[c.chunk] = Local{&booted_fd_, h_.booted ? &*h_.booted : nullptr, c.from};
        for (size_t i : d_->plan.in_place)
            local_[i] =
                Local{&target_fd_, h_.target ? &*h_.target : nullptr, d_->want.chunks[i].offset};
    }

    Result<size_t> read(uint8_t* buf, size_t n) {
        if (pos_ == chunk_.size()) {
            if (next_ == d_->want.chunks.size()) return size_t(0);
            BALLAST_TRY(load(next_++));
        }
        const size_t k = std::min(n, chunk_.size() - pos_);
        std::memcpy(buf, chunk_.data() + pos_, k);
        pos_ += k;
        return k;
    }

  private:
    struct Local {
        UniqueFd* fd = nullptr;
        const boot::SlotDevice* slot = nullptr;
        uint64_t from = 0;  // in the slot
    };

    Status load(size_t i) {
        const auto& c = d_->want.chunks[i];
        chunk_.resize(c.length);
        pos_ = 0;
        if (whole_) {
            BALLAST_TRY(read_stream(chunk_.data(), c.length));
            return check(i, "the registry");
        }
        if (const auto& l = local_[i]; l.slot) {
            const bool booted = l.fd == &booted_fd_;
            const char* from = booted ? "the booted slot" : "the target slot";
            if (!*l.fd) {
                *l.fd = UniqueFd(::open(l.slot->path.c_str(), O_RDONLY | O_CLOEXEC));
                if (!*l.fd) return fail_errno(errno, l.slot->path);
            }
            BALLAST_TRY(pread_exact(l.fd->get(), chunk_.data(), c.length, l.slot->start + l.from,
                                    l.slot->path));
            if (check(i, from)) return {};
            spdlog::warn("delta: chunk {} in {} changed since it was indexed; fetching it", i,
                         from);
            return fetch_alone(i);
        }
        if (r_.ranges->ignored.load()) {
            spdlog::warn(
                "delta: the registry answers ranges with the whole image (a pull-through "
                "cache?); the rest of the image comes in one stream");
            BALLAST_TRY(go_whole(c.offset));
            BALLAST_TRY(read_stream(chunk_.data(), c.length));
            return check(i, "the registry");
        }
        // The fetch range holding chunk i: ranges and chunks both go in image order.
        const auto& fetches = d_->plan.fetches;
        while (range_ < fetches.size() && i >= fetches[range_].first + fetches[range_].count)
            ++range_;
        if (range_ == fetches.size() || i < fetches[range_].first)
            return fail(Errc::failed, "{}: chunk {} has no source in the plan", r_.where, i);
        const auto& f = fetches[range_];
        if (stream_range_ != range_) start_range(range_);
        auto st = skip_to(c.offset - f.offset);
        if (st) st = read_stream(chunk_.data(), c.length);
        if (!st && r_.ranges->ignored.load()) {
            // 416 or 501: ranges refused. The whole blob, then, from its first byte.
            spdlog::warn("delta: {}; the rest of the image comes in one stream", st.error().what());
            BALLAST_TRY(go_whole(c.offset));
            st = read_stream(chunk_.data(), c.length);
        }
        BALLAST_TRY(std::move(st));
        return check(i, "the registry");
    }

    // Chunk i with a range request of its own (a local copy that no longer matches); a server
    // that does no ranges sends the rest of the image in one stream instead.
    Status fetch_alone(size_t i) {
        const auto& c = d_->want.chunks[i];
        HttpStream one(r_.where, r_.fetch, c.offset, c.length, r_.retry);
        Status st;
        for (size_t done = 0; st && done < c.length;) {
            auto got = one.read(reinterpret_cast<uint8_t*>(chunk_.data()) + done, c.length - done);
            if (!got)
                st = std::unexpected(got.error());
            else if (*got == 0)
                st = fail(Errc::io, "{}: a range ended early", r_.where);
            else
                done += *got;
        }
        if (!st && r_.ranges->ignored.load()) {
            spdlog::warn("delta: {}; the rest of the image comes in one stream", st.error().what());
            BALLAST_TRY(go_whole(c.offset));
            st = read_stream(chunk_.data(), c.length);
        }
        BALLAST_TRY(std::move(st));
        return check(i, "the registry");
    }

    // The current stream becomes range `r`'s: opened ahead already, or now. Then the next
    // ranges are opened ahead, once the server has shown it honours ranges (not before: a server
    // that answers each with the whole blob would send it several times over).
    void start_range(size_t r) {
        const auto& fetches = d_->plan.fetches;
        auto open = [&](size_t k) {
            return std::make_unique<HttpStream>(r_.where, r_.fetch, fetches[k].offset,
                                                fetches[k].length, r_.retry, kAheadBuffered);
        };
        while (!ahead_.empty() && ahead_.front().first < r)
            ahead_.pop_front();
        if (!ahead_.empty() && ahead_.front().first == r) {
            stream_ = std::move(ahead_.front().second);
            ahead_.pop_front();
        } else {
            stream_ = open(r);
        }
        stream_range_ = r;
        stream_pos_ = 0;
        if (!r_.ranges->honoured.load() || r_.ranges->ignored.load()) return;
        for (size_t k = ahead_.empty() ? r + 1 : ahead_.back().first + 1;
             ahead_.size() + 1 < kRangesInFlight && k < fetches.size(); ++k)
            ahead_.emplace_back(k, open(k));
    }

    // From here on every chunk comes from one plain GET of the whole blob, whose bytes before
    // `offset` are dropped: a server that does no ranges is asked for none.
    Status go_whole(uint64_t offset) {
        ahead_.clear();
        whole_ = true;
        stream_ =
            std::make_unique<HttpStream>(r_.where, r_.fetch, 0, d_->want.image_size, r_.retry);
        stream_pos_ = 0;
        return skip_to(offset);
    }

    // Drops the current stream's bytes up to `pos` (held chunks merged into a range, or the
    // image before the first chunk of a whole stream), in pieces: that can be megabytes.
    Status skip_to(uint64_t pos) {
        char skip[65536];
        while (stream_pos_ < pos)
            BALLAST_TRY(
                read_stream(skip, size_t(std::min<uint64_t>(sizeof skip, pos - stream_pos_))));
        return {};
    }

    Status check(size_t i, const char* from) {
        const auto& c = d_->want.chunks[i];
        const auto got = BALLAST_TRY(sha256_digest(chunk_));
        if (got != c.sha256)
            return fail(Errc::verification,
                        "{}: chunk {} (bytes {}..{}) from {} does not match the signed chunk index",
                        r_.where, i, c.offset, c.offset + c.length, from);
        return {};
    }

    // Exactly `n` bytes of the current stream.
    Status read_stream(char* buf, size_t n) {
        for (size_t done = 0; done < n;) {
            const size_t got =
                BALLAST_TRY(stream_->read(reinterpret_cast<uint8_t*>(buf) + done, n - done));
            if (got == 0) return fail(Errc::io, "{}: a range ended early", r_.where);
            done += got;
            stream_pos_ += got;
        }
        return {};
    }

    std::shared_ptr<const PreparedDelta> d_;
    Holdings h_;
    DeltaRemote r_;
    std::vector<Local> local_;  // per chunk: where it is held, if it is
    UniqueFd booted_fd_, target_fd_;
    static constexpr size_t kAheadBuffered = 4u << 20;  // per range opened ahead
    std::unique_ptr<HttpStream> stream_;
    std::deque<std::pair<size_t, std::unique_ptr<HttpStream>>> ahead_;  // (range, its stream)
    size_t range_ = 0, stream_range_ = SIZE_MAX;
    uint64_t stream_pos_ = 0;  // bytes read of the current stream
    bool whole_ = false;       // the rest of the image from one stream
    std::string chunk_;        // the current chunk
    size_t pos_ = 0, next_ = 0;
};

}  // namespace

Result<PreparedDelta> prepare_delta(ChunkIndex want, const Holdings& h, const PlanOptions& o) {
    PreparedDelta d;
    if (h.booted) d.booted = booted_chunks(h, want.params);
    // The target is only a shortcut: unreadable, it is written whole like any other.
    if (h.target) {
        auto t = target_places(*h.target, want);
        if (t)
            d.target = std::move(*t);
        else
            spdlog::warn("delta: reading the target slot: {}; not reusing it", t.error().what());
    }
    std::vector<Seed> seeds;
    if (d.booted) seeds.push_back({&*d.booted, false});
    if (d.target) seeds.push_back({&*d.target, true});
    d.plan = plan_delta(want, seeds, o);
    d.want = std::move(want);
    return d;
}

ImageReader delta_reader(std::shared_ptr<const PreparedDelta> d, Holdings h, DeltaRemote remote) {
    auto reader = std::make_shared<DeltaReader>(std::move(d), std::move(h), std::move(remote));
    return [reader](uint8_t* buf, size_t n) { return reader->read(buf, n); };
}

std::filesystem::path kept_index_path(const std::filesystem::path& state_dir, boot::Slot slot) {
    return state_dir / "slot-index" / (std::string(boot::name(slot)) + ".bcidx");
}

}  // namespace ballast::update
