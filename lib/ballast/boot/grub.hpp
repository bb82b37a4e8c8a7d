// The GRUB boot-control backend: the BootState in two copies of a GRUB environment block on the
// ESP (/grub/env1/grubenv, /grub/env2/grubenv), written and recovered as ab-update.md requires:
//   save:  copy 2 then copy 1; each: the current block with its lock set (a same-length change
//          in the first sector), the new block locked, the new block unlocked.
//   load:  copy 1 if unlocked and valid, else copy 2; a locked or damaged copy is repaired from
//          the other. overlay/grub/grub.cfg does the same at boot.
// Any torn write leaves one consistent copy; tests cut the protocol at every sector.
#pragma once

#include <string>
#include <string_view>

#include "ballast/boot/control.hpp"
#include "ballast/boot/state.hpp"
#include "ballast/core/result.hpp"

namespace ballast::boot {

inline constexpr const char* kEnvCopy1 = "/grub/env1/grubenv";
inline constexpr const char* kEnvCopy2 = "/grub/env2/grubenv";

// Where the two blocks live: the ESP's files written in place (disk/fat), or memory in tests.
class EnvStore {
  public:
    virtual ~EnvStore() = default;
    // copy: 1 or 2. Reads exactly 1024 bytes.
    [[nodiscard]] virtual Result<std::string> read(int copy) = 0;
    // Writes 1024 bytes over the same sectors and makes them durable before returning.
    [[nodiscard]] virtual Status write(int copy, std::string_view block) = 0;
    // The copy's file, for messages: GRUB's by default.
    [[nodiscard]] virtual std::string where(int copy) const {
        return copy == 1 ? kEnvCopy1 : kEnvCopy2;
    }
};

class GrubBootControl final : public BootControl {
  public:
    explicit GrubBootControl(EnvStore& store) : store_(store) {}

    [[nodiscard]] std::string_view backend() const override { return "grub"; }
    // Repairs a locked or damaged copy from the other one (unless `repair` is false).
    // Errc::parse when neither copy is usable.
    [[nodiscard]] Result<BootState> load(bool repair = true) override;
    // Stores `s` with the two-copy protocol.
    [[nodiscard]] Status save(const BootState& s) override;
    // Writes both copies from scratch, copy 2 then copy 1.
    [[nodiscard]] Status initialize(const BootState& s) override;

  private:
    [[nodiscard]] Status write_copy(int copy, const std::string& locked,
                                    const std::string& unlocked);
    EnvStore& store_;
};

}  // namespace ballast::boot
