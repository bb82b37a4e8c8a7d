// A test double of boot::BootControl that keeps the state in memory: every save is recorded, and
// a save or load can be made to fail, so that what drives boot control (upgrade, slot admin, the
// health verdict) is tested without a disk image. The real GRUB backend has its own tests.
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

#include "ballast/boot/control.hpp"

namespace ballast::test {

class MemoryBootControl final : public boot::BootControl {
  public:
    explicit MemoryBootControl(boot::BootState s) : state_(std::move(s)) {}

    [[nodiscard]] std::string_view backend() const override { return "memory"; }
    [[nodiscard]] Result<boot::BootState> load(bool) override {
        if (fail_loads) return fail(Errc::parse, "boot state damaged (test)");
        return state_;
    }
    [[nodiscard]] Status save(const boot::BootState& s) override {
        if (fail_save_number == saves.size() + 1)
            return fail(Errc::io, "ESP write failed (test: save {})", fail_save_number);
        saves.push_back(s);
        state_ = s;
        return {};
    }
    [[nodiscard]] Status initialize(const boot::BootState& s) override { return save(s); }

    [[nodiscard]] const boot::BootState& state() const { return state_; }

    std::vector<boot::BootState> saves;  // every state stored, in order
    size_t fail_save_number = 0;         // 1-based: that save fails (nothing stored); 0: none
    bool fail_loads = false;

  private:
    boot::BootState state_;
};

}  // namespace ballast::test
