#include "ballast/boot/state.hpp"

namespace ballast::boot {
namespace {

std::string key(Slot s, const char* what) {
    return fmt::format("ballast_{}_{}", name(s), what);
}

Result<bool> flag(const grubenv::Vars& v, const std::string& k) {
    auto x = grubenv::get(v, k);
    if (!x) return fail(Errc::parse, "boot control: {} is missing", k);
    if (*x == "0") return false;
    if (*x == "1") return true;
    return fail(Errc::parse, "boot control: {}={} is not 0 or 1", k, *x);
}

}  // namespace

Result<BootState> from_vars(const grubenv::Vars& v) {
    BootState s;
    auto order = grubenv::get(v, "ballast_order");
    if (!order) return fail(Errc::parse, "boot control: ballast_order is missing");
    if (*order == "A B")
        s.order = {Slot::A, Slot::B};
    else if (*order == "B A")
        s.order = {Slot::B, Slot::A};
    else
        return fail(Errc::parse, "boot control: ballast_order={} is not 'A B' or 'B A'", *order);
    for (Slot slot : {Slot::A, Slot::B}) {
        auto& i = s.at(slot);
        i.ok = BALLAST_TRY(flag(v, key(slot, "ok")));
        i.trial = BALLAST_TRY(flag(v, key(slot, "trial")));
        auto tries = grubenv::get(v, key(slot, "tries"));
        if (!tries || tries->size() != 1 || (*tries)[0] < '0' || (*tries)[0] > '0' + kMaxTries)
            return fail(Errc::parse, "boot control: {}={} is not 0..{}", key(slot, "tries"),
                        tries.value_or("(missing)"), kMaxTries);
        i.tries = (*tries)[0] - '0';
        i.version = grubenv::get(v, key(slot, "version")).value_or("");
    }
    if (auto lg = grubenv::get(v, "ballast_last_good"); lg && !lg->empty()) {
        auto slot = parse_slot(*lg);
        if (!slot)
            return fail(Errc::parse, "boot control: ballast_last_good={} is not A or B", *lg);
        s.last_good = *slot;
    }
    // Absent on disks from before resets (and recovery) existed.
    if (auto r = grubenv::get(v, "ballast_reset")) s.reset = BALLAST_TRY(parse_reset_var(*r));
    if (auto n = grubenv::get(v, "ballast_next")) {
        if (*n != "0" && *n != "r")
            return fail(Errc::parse, "boot control: ballast_next={} is not 0 or r", *n);
        s.recovery_next = *n == "r";
    }
    return s;
}

std::string reset_var(const std::optional<ResetRequest>& r) {
    if (!r) return "0";
    const int bits =
        int(r->oem) | int(r->encrypted) << 1 | int(r->poweroff) << 2 | int(r->keep_persistent) << 3;
    return std::string(1, "0123456789abcdef"[1 + bits]);
}

std::string_view reset_scope(const ResetRequest& r) {
    return r.keep_persistent ? "OEM" : r.oem ? "persistent and OEM" : "persistent";
}

Result<std::optional<ResetRequest>> parse_reset_var(std::string_view v) {
    constexpr std::string_view kDigits = "0123456789abcdef";
    const auto n = v.size() == 1 ? kDigits.find(v[0]) : std::string_view::npos;
    if (n == std::string_view::npos || n > 14)
        return fail(Errc::parse, "boot control: ballast_reset={} is not a digit 0..e", v);
    if (n == 0) return std::nullopt;
    const int bits = int(n) - 1;
    ResetRequest r{.oem = (bits & 1) != 0,
                   .encrypted = (bits & 2) != 0,
                   .poweroff = (bits & 4) != 0,
                   .keep_persistent = (bits & 8) != 0};
    if (r.keep_persistent && (!r.oem || r.encrypted))
        return fail(Errc::parse, "boot control: ballast_reset={} asks for no reset", v);
    return r;
}

grubenv::Vars to_vars(const BootState& s, bool lock) {
    grubenv::Vars v;
    v.emplace_back("ballast_lock", lock ? "1" : "0");
    v.emplace_back("ballast_order", fmt::format("{} {}", name(s.order[0]), name(s.order[1])));
    for (Slot slot : {Slot::A, Slot::B}) {
        const auto& i = s.at(slot);
        v.emplace_back(key(slot, "ok"), i.ok ? "1" : "0");
        v.emplace_back(key(slot, "trial"), i.trial ? "1" : "0");
        v.emplace_back(key(slot, "tries"), std::to_string(i.tries));
        v.emplace_back(key(slot, "version"), i.version);
    }
    v.emplace_back("ballast_last_good", s.last_good ? std::string(name(*s.last_good)) : "");
    v.emplace_back("ballast_reset", reset_var(s.reset));
    v.emplace_back("ballast_next", s.recovery_next ? "r" : "0");
    return v;
}

BootState initial_state(Slot slot, std::string version) {
    BootState s;
    s.order = {slot, other(slot)};
    s.at(slot) = {true, false, 0, std::move(version)};
    s.last_good = slot;
    return s;
}

namespace {

// Why a slot ahead in the order was passed over, for the reason operators read.
std::string passed_over(Slot slot, const SlotInfo& i) {
    if (i.ok) return fmt::format("{} has no tries left", name(slot));
    if (i.version.empty()) return fmt::format("{} is empty", name(slot));
    return fmt::format("{} is not bootable (being written, or marked bad)", name(slot));
}

Decision decide_slot(const BootState& s) {
    std::string skipped;
    auto why = [&](std::string r) { return skipped.empty() ? r : skipped + "; " + r; };
    for (Slot slot : s.order) {
        const auto& i = s.at(slot);
        if (i.ok && !i.trial) return {slot, s, false, why(fmt::format("{} is good", name(slot)))};
        if (i.ok && i.tries > 0) {
            Decision d{slot, s, true,
                       why(fmt::format("{} is on trial, {} tries left before this boot", name(slot),
                                       i.tries))};
            d.after.at(slot).tries = i.tries - 1;
            return d;
        }
        skipped += (skipped.empty() ? "" : "; ") + passed_over(slot, i);
    }
    if (s.last_good)
        return {*s.last_good, s, false,
                why(fmt::format("nothing else bootable: last good {}", name(*s.last_good)))};
    return {Slot::A, s, false, why("nothing bootable and no last good slot: A")};
}

}  // namespace

Decision decide(const BootState& s) {
    Decision d = decide_slot(s);
    if (!s.recovery_next) return d;
    d.after.recovery_next = false;
    d.saved = true;
    d.recovery = true;
    d.slot = s.last_good.value_or(d.slot);
    d.reason += fmt::format("; the recovery entry, once: slot {}", name(d.slot));
    return d;
}

Result<BootState> begin_write(BootState s, Slot target, std::optional<Slot> booted) {
    if (booted && target == *booted)
        return fail(Errc::invalid_argument, "slot {} is the booted slot; it is never written",
                    name(target));
    if (booted) {
        // The slot being overwritten may be the only fallback: only a good, committed booted
        // slot may take its place (and becomes the last good one).
        const auto& b = s.at(*booted);
        if (!b.ok || b.trial)
            return fail(Errc::invalid_argument,
                        "the booted slot {} is {}; slot {} is the fallback and is not written "
                        "until {} is good (health check passed or agentctl mark-good)",
                        name(*booted), b.ok ? "on trial" : "marked bad", name(target),
                        name(*booted));
    }
    auto& t = s.at(target);
    t.ok = false;
    t.trial = false;
    t.tries = 0;
    t.version.clear();
    if (booted)
        s.last_good = *booted;
    else if (s.last_good == target)
        s.last_good.reset();
    return s;
}

Result<BootState> activate(BootState s, Slot target, int tries, std::string version,
                           std::optional<Slot> booted) {
    if (booted && target == *booted)
        return fail(Errc::invalid_argument,
                    "slot {} is the booted slot; it cannot be activated for an upgrade",
                    name(target));
    if (tries < 1 || tries > kMaxTries)
        return fail(Errc::invalid_argument, "tries must be 1..{}", kMaxTries);
    s.at(target) = {true, true, tries, std::move(version)};
    s.order = {target, other(target)};
    return s;
}

Result<BootState> commit(BootState s, Slot booted) {
    auto& b = s.at(booted);
    if (!b.ok)
        return fail(Errc::invalid_argument, "slot {} is marked bad; it cannot be committed",
                    name(booted));
    b.trial = false;
    b.tries = 0;
    s.last_good = booted;
    s.order = {booted, other(booted)};
    return s;
}

Result<BootState> mark_bad(BootState s, Slot slot) {
    const auto& o = s.at(other(slot));
    if (!o.ok || (o.trial && o.tries == 0))
        return fail(
            Errc::invalid_argument,
            "refusing to mark {} bad: slot {} is not bootable, so nothing would be left to boot",
            name(slot), name(other(slot)));
    auto& i = s.at(slot);
    i.ok = false;
    i.trial = false;
    i.tries = 0;
    s.order = {other(slot), slot};
    if (s.last_good == slot) s.last_good = other(slot);
    return s;
}

Result<BootState> mark_good(BootState s, Slot slot) {
    auto& i = s.at(slot);
    if (i.version.empty())
        return fail(Errc::invalid_argument, "slot {} is empty; there is nothing to mark good",
                    name(slot));
    i.ok = true;
    i.trial = false;
    i.tries = 0;
    s.last_good = slot;
    return s;
}

Result<BootState> rollback(BootState s, Slot booted) {
    Slot to = other(booted);
    const auto& t = s.at(to);
    if (t.version.empty())
        return fail(Errc::invalid_argument, "cannot roll back: slot {} is empty", name(to));
    if (!t.ok)
        return fail(Errc::invalid_argument, "cannot roll back: slot {} is marked bad", name(to));
    // A staged slot has never passed a health check: making it primary without its tries would
    // leave nothing to fall back to (agentctl mark-bad cancels a staged upgrade instead).
    if (t.trial)
        return fail(Errc::invalid_argument,
                    "cannot roll back: slot {} is on trial (staged, never committed); boot it to "
                    "let its health check decide, or cancel it with agentctl mark-bad {}",
                    name(to), name(to));
    s.at(to).trial = false;
    s.at(to).tries = 0;
    s.order = {to, booted};
    s.last_good = to;
    return s;
}

std::string describe(const BootState& s, Slot slot) {
    const auto& i = s.at(slot);
    std::string state = i.version.empty() && !i.ok ? "empty"
                        : !i.ok                    ? "bad"
                        : i.trial                  ? fmt::format("trial, {} tries left", i.tries)
                                                   : "good";
    return fmt::format("{}: {}{}{}{}", name(slot), state, s.primary() == slot ? ", primary" : "",
                       s.last_good == slot ? ", last good" : "",
                       i.version.empty() ? "" : ", " + i.version);
}

}  // namespace ballast::boot
