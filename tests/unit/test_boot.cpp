// Boot control: the grubenv codec and the A/B state machine.
#include <set>

#include <catch2/catch.hpp>

#include "ballast/boot/grubenv.hpp"
#include "ballast/boot/state.hpp"

using namespace ballast;
using namespace ballast::boot;

TEST_CASE("grubenv round trip, escaping, exact size", "[boot][grubenv]") {
    grubenv::Vars v = {{"a", "1"}, {"path", "x\\y"}, {"multi", "l1\nl2"}, {"empty", ""}};
    auto block = grubenv::serialize(v);
    REQUIRE(block);
    CHECK(block->size() == 1024);
    CHECK(block->rfind("# GRUB Environment Block\na=1\npath=x\\\\y\nmulti=l1\\\nl2\nempty=\n", 0) ==
          0);
    CHECK(block->back() == '#');
    auto back = grubenv::parse(*block);
    REQUIRE(back);
    CHECK(*back == v);
}

TEST_CASE("grubenv rejects damage", "[boot][grubenv]") {
    auto good = grubenv::serialize({{"a", "1"}}).value();
    CHECK(grubenv::parse(good.substr(0, 1023)).error().what() ==
          "environment block is 1023 bytes, not 1024");
    std::string bad_header = good;
    bad_header[2] = 'X';
    CHECK_FALSE(grubenv::parse(bad_header));
    std::string junk = good;
    junk[1000] = 'z';
    CHECK(grubenv::parse(junk).error().what().find("data after the padding") != std::string::npos);
    std::string noeq = std::string(grubenv::kHeader) + "novalue\n";
    noeq.append(1024 - noeq.size(), '#');
    CHECK_FALSE(grubenv::parse(noeq));
    grubenv::Vars big = {{"k", std::string(1100, 'v')}};
    CHECK(grubenv::serialize(big).error().code() == Errc::invalid_argument);
    CHECK_FALSE(grubenv::serialize({{"bad=name", "x"}}));
}

TEST_CASE("state <-> variables, range checked", "[boot][state]") {
    auto s = initial_state(Slot::A, "1.0");
    auto v = to_vars(s);
    CHECK(v.front() == std::pair<std::string, std::string>{"ballast_lock", "0"});
    auto back = from_vars(v);
    REQUIRE(back);
    CHECK(*back == s);
    CHECK(back->at(Slot::A).ok);
    CHECK_FALSE(back->at(Slot::B).ok);
    CHECK(back->last_good == Slot::A);
    auto broken = v;
    grubenv::set(broken, "ballast_B_tries", "12");
    CHECK(from_vars(broken).error().what().find("ballast_B_tries=12 is not 0..9") !=
          std::string::npos);
    broken = v;
    grubenv::set(broken, "ballast_order", "A A");
    CHECK_FALSE(from_vars(broken));
    broken = v;
    grubenv::set(broken, "ballast_A_ok", "yes");
    CHECK_FALSE(from_vars(broken));
}

TEST_CASE("a reset in progress is part of the boot state, one fixed-length digit",
          "[boot][state]") {
    auto s = initial_state(Slot::A, "1.0");
    CHECK(grubenv::get(to_vars(s), "ballast_reset") == "0");
    std::set<std::string> digits;
    for (bool oem : {false, true})
        for (bool encrypted : {false, true})
            for (bool poweroff : {false, true})
                for (bool keep : {false, true}) {
                    if (keep && (!oem || encrypted)) continue;  // no reset: never written
                    s.reset = ResetRequest{.oem = oem,
                                           .encrypted = encrypted,
                                           .poweroff = poweroff,
                                           .keep_persistent = keep};
                    auto v = to_vars(s);
                    const auto digit = *grubenv::get(v, "ballast_reset");
                    CHECK(digit.size() == 1);
                    digits.insert(digit);
                    auto back = from_vars(v);
                    REQUIRE(back);
                    CHECK(*back == s);
                }
    CHECK(digits.size() == 10);
    // The first resets' digits keep their meaning.
    s.reset = ResetRequest{.oem = true, .encrypted = true};
    CHECK(grubenv::get(to_vars(s), "ballast_reset") == "4");
    // Disks from before resets have no such variable: no reset.
    auto v = to_vars(initial_state(Slot::B, "2.0"));
    std::erase_if(v, [](const auto& kv) { return kv.first == "ballast_reset"; });
    CHECK_FALSE(from_vars(v)->reset);
    for (const char* bad : {"f", "A", "10", "", "-"}) {
        grubenv::set(v, "ballast_reset", bad);
        CAPTURE(bad);
        CHECK(from_vars(v).error().what().find("is not a digit 0..e") != std::string::npos);
    }
    // Persistent kept with OEM kept too (9), or kept but "encrypted again" (b): no such reset.
    for (const char* bad : {"9", "b", "d"}) {
        grubenv::set(v, "ballast_reset", bad);
        CAPTURE(bad);
        CHECK(from_vars(v).error().what().find("asks for no reset") != std::string::npos);
    }
    // The transitions carry it as they found it.
    s = initial_state(Slot::A, "1.0");
    s.reset = ResetRequest{.oem = true};
    auto w = begin_write(s, Slot::B, Slot::A);
    REQUIRE(w);
    CHECK(w->reset == s.reset);
}

TEST_CASE("decide: good slot, trial counting, fallback, last good", "[boot][state]") {
    auto s = initial_state(Slot::A, "1");
    auto d = decide(s);
    CHECK(d.slot == Slot::A);
    CHECK_FALSE(d.saved);

    // An upgrade to B on trial with 2 tries: B boots twice, then A.
    s = activate(s, Slot::B, 2, "2", Slot::A).value();
    d = decide(s);
    CHECK(d.slot == Slot::B);
    CHECK(d.saved);
    CHECK(d.after.at(Slot::B).tries == 1);
    d = decide(d.after);
    CHECK(d.slot == Slot::B);
    CHECK(d.after.at(Slot::B).tries == 0);
    d = decide(d.after);
    CHECK(d.slot == Slot::A);
    CHECK_FALSE(d.saved);
    // I4: a committed system never changes slots on power cycles.
    auto committed =
        commit(activate(initial_state(Slot::A, "1"), Slot::B, 3, "2", Slot::A).value(), Slot::B)
            .value();
    for (int i = 0; i < 20; ++i) {
        auto dd = decide(committed);
        CHECK(dd.slot == Slot::B);
        CHECK_FALSE(dd.saved);
        committed = dd.after;
    }
    // The reason says what was passed over: a slot being rewritten for an upgrade may still be
    // first in the order, and an operator reading "primary B" must see that A boots.
    BootState writing = initial_state(Slot::A, "1");
    writing.order = {Slot::B, Slot::A};  // B stayed first after a failed upgrade; now rewritten
    writing.at(Slot::B).version = "2";
    CHECK(decide(writing).slot == Slot::A);
    CHECK(decide(writing).reason == "B is not bootable (being written, or marked bad); A is good");
    writing.at(Slot::B).version.clear();
    CHECK(decide(writing).reason == "B is empty; A is good");
    CHECK(decide(initial_state(Slot::A, "1")).reason == "A is good");
    auto exhausted = activate(initial_state(Slot::A, "1"), Slot::B, 1, "2", Slot::A).value();
    exhausted.at(Slot::B).tries = 0;
    CHECK(decide(exhausted).reason == "B has no tries left; A is good");
    // Nothing ok: last good, else A.
    BootState none;
    none.last_good = Slot::B;
    CHECK(decide(none).slot == Slot::B);
    none.last_good.reset();
    CHECK(decide(none).slot == Slot::A);
}

TEST_CASE("transitions refuse what the spec forbids", "[boot][state]") {
    auto s = initial_state(Slot::A, "1");
    CHECK(begin_write(s, Slot::A, Slot::A).error().what() ==
          "slot A is the booted slot; it is never written");
    CHECK_FALSE(activate(s, Slot::A, 3, "2", Slot::A));
    CHECK_FALSE(activate(s, Slot::B, 0, "2", Slot::A));
    CHECK_FALSE(activate(s, Slot::B, 10, "2", Slot::A));
    auto w = begin_write(s, Slot::B, Slot::A).value();
    CHECK_FALSE(w.at(Slot::B).ok);
    CHECK(w.primary() == Slot::A);  // writing never changes what boots
    CHECK(decide(w).slot == Slot::A);
    // Rollback needs a good, non-empty other slot.
    CHECK(rollback(s, Slot::A).error().what() == "cannot roll back: slot B is empty");
    auto two = commit(activate(s, Slot::B, 3, "2", Slot::A).value(), Slot::B).value();
    auto rb = rollback(two, Slot::B).value();
    CHECK(rb.primary() == Slot::A);
    CHECK(decide(rb).slot == Slot::A);
    auto bad = mark_bad(two, Slot::A).value();
    CHECK(rollback(bad, Slot::B).error().what() == "cannot roll back: slot A is marked bad");
    // Never mark the last bootable slot bad.
    CHECK(mark_bad(s, Slot::A).error().what().find("nothing would be left to boot") !=
          std::string::npos);
    CHECK_FALSE(mark_good(s, Slot::B));
    CHECK_FALSE(commit(bad, Slot::A));
}

TEST_CASE("a failed trial: marked bad, the other slot boots", "[boot][state]") {
    auto s = activate(initial_state(Slot::A, "1"), Slot::B, 3, "2", Slot::A).value();
    auto bad = mark_bad(s, Slot::B).value();
    CHECK(bad.primary() == Slot::A);
    CHECK(decide(bad).slot == Slot::A);
    CHECK(describe(bad, Slot::B) == "B: bad, 2");
    CHECK(describe(bad, Slot::A) == "A: good, primary, last good, 1");
}

TEST_CASE("recovery once: ballast_next, and the decision it adds", "[boot][state]") {
    auto s = initial_state(Slot::A, "1.0");
    CHECK(grubenv::get(to_vars(s), "ballast_next") == "0");
    s.recovery_next = true;
    auto v = to_vars(s);
    CHECK(grubenv::get(v, "ballast_next") == "r");
    CHECK(from_vars(v)->recovery_next);
    // Disks from before it: not asked. Damage: an error, as every value.
    std::erase_if(v, [](const auto& kv) { return kv.first == "ballast_next"; });
    CHECK_FALSE(from_vars(v)->recovery_next);
    grubenv::set(v, "ballast_next", "x");
    CHECK(from_vars(v).error().what().find("ballast_next=x is not 0 or r") != std::string::npos);
    // The decision is made (a try used) as ever; the recovery entry starts the last good slot,
    // and the saved state has it cleared.
    auto t = activate(initial_state(Slot::A, "1"), Slot::B, 2, "2", Slot::A).value();
    t.recovery_next = true;
    auto d = decide(t);
    CHECK(d.recovery);
    CHECK(d.saved);
    CHECK(d.slot == Slot::A);
    CHECK_FALSE(d.after.recovery_next);
    CHECK(d.after.at(Slot::B).tries == 1);
    t.recovery_next = false;
    CHECK_FALSE(decide(t).recovery);
}
