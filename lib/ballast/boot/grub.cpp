#include "ballast/boot/grub.hpp"

namespace ballast::boot {
namespace {

struct Copy {
    bool usable = false;  // parsed, unlocked, valid state
    BootState state;
    std::string block;
    grubenv::Vars vars;
    bool parsed = false;
};

Copy read_copy(EnvStore& store, int n) {
    Copy c;
    auto block = store.read(n);
    if (!block) return c;
    c.block = *block;
    auto vars = grubenv::parse(c.block);
    if (!vars) return c;
    c.parsed = true;
    c.vars = *vars;
    if (grubenv::get(c.vars, "ballast_lock") != "0") return c;
    auto st = from_vars(c.vars);
    if (!st) return c;
    c.state = *st;
    c.usable = true;
    return c;
}

}  // namespace

Status GrubBootControl::write_copy(int copy, const std::string& locked,
                                   const std::string& unlocked) {
    // 1: the current content with the lock set, when it parses (a same-length change in the
    // first sector, so a tear cannot mix old and new content under an open lock).
    if (auto cur = store_.read(copy); cur)
        if (auto vars = grubenv::parse(*cur); vars && grubenv::get(*vars, "ballast_lock") == "0") {
            grubenv::set(*vars, "ballast_lock", "1");
            auto lockedcur = BALLAST_TRY(grubenv::serialize(*vars));
            BALLAST_TRY_CTX(store_.write(copy, lockedcur), "boot control: {}", store_.where(copy));
        }
    // 2: the new content, still locked. 3: unlocked.
    BALLAST_TRY_CTX(store_.write(copy, locked), "boot control: {}", store_.where(copy));
    BALLAST_TRY_CTX(store_.write(copy, unlocked), "boot control: {}", store_.where(copy));
    return {};
}

Result<BootState> GrubBootControl::load(bool repair) {
    Copy c1 = read_copy(store_, 1), c2 = read_copy(store_, 2);
    if (c1.usable) {
        if (repair && (!c2.usable || c2.block != c1.block)) {
            // Copy 2 was being written (or is damaged): the last completed state is copy 1's.
            auto locked = BALLAST_TRY(grubenv::serialize(to_vars(c1.state, true)));
            BALLAST_TRY(write_copy(2, locked, c1.block));
        }
        return c1.state;
    }
    if (c2.usable) {
        if (repair) {
            auto locked = BALLAST_TRY(grubenv::serialize(to_vars(c2.state, true)));
            BALLAST_TRY(write_copy(1, locked, c2.block));
        }
        return c2.state;
    }
    return fail(Errc::parse, "boot control: neither copy of the boot state is usable ({} and {})",
                store_.where(1), store_.where(2));
}

Status GrubBootControl::save(const BootState& s) {
    auto locked = BALLAST_TRY(grubenv::serialize(to_vars(s, true)));
    auto unlocked = BALLAST_TRY(grubenv::serialize(to_vars(s, false)));
    BALLAST_TRY(write_copy(2, locked, unlocked));
    BALLAST_TRY(write_copy(1, locked, unlocked));
    return {};
}

Status GrubBootControl::initialize(const BootState& s) {
    return save(s);
}

}  // namespace ballast::boot
