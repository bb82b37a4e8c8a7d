// update::upgrade() over an in-memory boot control (memory_boot.hpp) and a bundle from memory:
// every refusal leaves boot control, the journal and both slots untouched; every failure after
// the journal leaves the target unbootable, the booted slot first and the journal failed; and
// the boot-control writes are exactly the two the write order allows (target bad, then one
// activation). The signature and https paths have their own tests (integration layer).
#include <catch2/catch.hpp>

#include <filesystem>
#include <string>

#include "ballast/boot/state.hpp"
#include "ballast/core/sha256.hpp"
#include "ballast/update/journal.hpp"
#include "ballast/update/upgrade.hpp"
#include "helpers.hpp"
#include "memory_boot.hpp"

using namespace ballast;
using namespace ballast::update;
using boot::Slot;

namespace {

constexpr uint64_t kSlotSize = 1u << 20;

// 256 KiB that differ from block to block, so a misplaced block shows in the hash.
std::string image_bytes(char seed) {
    std::string s(256u << 10, '\0');
    for (size_t i = 0; i < s.size(); ++i)
        s[i] = char(seed + i / 4096 + i % 251);
    return s;
}

struct MemoryBundle {
    std::string bytes = image_bytes('v');
    Manifest manifest;
    // Reading fails after this many bytes (a dropped disk or connection); npos: never.
    size_t fail_after = std::string::npos;

    MemoryBundle() {
        manifest.os_name = "ballast-os";
        manifest.version = "2.0";
        manifest.compatible = "test-amd64";
        manifest.image = {"rootfs.img", bytes.size(), sha256_hex(bytes).value(), "squashfs"};
        manifest.created = "2026-12-04T00:00:00Z";
    }
    OpenedSource open(const std::string& where) const {
        OpenedSource o;
        o.where = where;
        o.checked.manifest = manifest;
        o.checked.manifest_sha256 = sha256_hex(serialize_manifest(manifest)).value();
        o.checked.signer = {"/CN=test signer", "Dec  4 00:00:00 2036 GMT"};
        o.open_image = [this]() -> Result<ImageReader> {
            auto pos = std::make_shared<size_t>(0);
            return ImageReader([this, pos](uint8_t* buf, size_t n) -> Result<size_t> {
                if (*pos >= fail_after) return fail(Errc::io, "connection reset (test)");
                n = std::min({n, bytes.size() - *pos, fail_after - *pos});
                std::memcpy(buf, bytes.data() + *pos, n);
                *pos += n;
                return n;
            });
        };
        return o;
    }
};

// A node booted from A running 1.0: both slots in one file, the state folder beside it.
class Node {
  public:
    Node() : control(boot::initial_state(Slot::A, "1.0")) {
        disk_ = (dir_ / "disk").string();
        test::write_text(disk_, std::string(2 * kSlotSize, 'A'));
        env.control = &control;
        env.slots = {{disk_, 0, kSlotSize}, {disk_, kSlotSize, kSlotSize}};
        env.booted = Slot::A;
        env.state_dir = dir_ / "state";
        env.compatible = "test-amd64";
        env.open = [this](const std::string& where, const SourceOptions&) -> Result<OpenedSource> {
            return bundle.open(where);
        };
    }
    Result<UpgradeResult> upgrade(UpgradeRequest req = {"/bundles/2.0"}) {
        return update::upgrade(req, env);
    }
    [[nodiscard]] std::string slot_bytes(Slot s) const {
        return test::read_text(disk_).substr(s == Slot::A ? 0 : kSlotSize, kSlotSize);
    }
    [[nodiscard]] std::optional<Journal> journal() const {
        return load_journal(journal_path(env.state_dir)).value();
    }
    // A refusal: an error with `code` naming `what`; nothing stored, nothing written.
    void check_refused(const Result<UpgradeResult>& r, Errc code, const std::string& what) {
        REQUIRE_FALSE(r);
        CHECK(r.error().code() == code);
        INFO(r.error().what());
        CHECK(test::contains(r.error().what(), what));
        CHECK(control.saves.empty());
        CHECK_FALSE(journal());
        CHECK(slot_bytes(Slot::A) == std::string(kSlotSize, 'A'));
        CHECK(slot_bytes(Slot::B) == std::string(kSlotSize, 'A'));
    }
    // A failure after the journal: the target unbootable, the booted slot still first and good,
    // the journal failed saying why, the booted slot's bytes untouched.
    void check_failed_after_journal(const Result<UpgradeResult>& r, const std::string& what) {
        REQUIRE_FALSE(r);
        INFO(r.error().what());
        CHECK(test::contains(r.error().what(), what));
        const auto& s = control.state();
        CHECK_FALSE(s.at(Slot::B).ok);
        CHECK(s.at(Slot::A).ok);
        CHECK(s.primary() == Slot::A);
        CHECK(boot::decide(s).slot == Slot::A);
        auto j = journal();
        REQUIRE(j);
        CHECK(j->state == JobState::failed);
        CHECK(test::contains(j->error, what));
        CHECK(slot_bytes(Slot::A) == std::string(kSlotSize, 'A'));
    }

    test::TempDir dir_;
    std::string disk_;
    test::MemoryBootControl control;
    MemoryBundle bundle;
    UpgradeEnv env;
};

}  // namespace

TEST_CASE("upgrade flow: the write order, over a boot control in memory", "[update][upgrade]") {
    Node n;
    // The stages and the key step, with the number of boot-control writes made before each.
    std::vector<std::string> hooks;
    n.env.run_stage = [&](const std::string& stage) {
        hooks.push_back(fmt::format("{} after {} writes", stage, n.control.saves.size()));
        return Status{};
    };
    n.env.key_hook = [&] {
        hooks.push_back(fmt::format("keys after {} writes", n.control.saves.size()));
        return Status{};
    };
    auto r = n.upgrade();
    REQUIRE(r);
    CHECK(r->version == "2.0");
    CHECK(r->from_version == "1.0");
    CHECK(r->target == Slot::B);
    CHECK_FALSE(r->already);
    // Exactly two boot-control writes: the target bad (I2), then one activation (I3).
    REQUIRE(n.control.saves.size() == 2);
    CHECK_FALSE(n.control.saves[0].at(Slot::B).ok);
    CHECK(n.control.saves[0].at(Slot::A) == boot::initial_state(Slot::A, "1.0").at(Slot::A));
    const auto& active = n.control.saves[1];
    CHECK(active.primary() == Slot::B);
    CHECK(active.at(Slot::B).ok);
    CHECK(active.at(Slot::B).trial);
    CHECK(active.at(Slot::B).tries == 3);
    CHECK(active.at(Slot::B).version == "2.0");
    CHECK(active.last_good == Slot::A);
    // The slot holds the image, the booted slot nothing new; the journal says staged.
    CHECK(n.slot_bytes(Slot::B).substr(0, n.bundle.bytes.size()) == n.bundle.bytes);
    CHECK(n.slot_bytes(Slot::A) == std::string(kSlotSize, 'A'));
    auto j = n.journal();
    REQUIRE(j);
    CHECK(j->state == JobState::staged);
    CHECK(j->target == Slot::B);
    CHECK(j->bytes_done == n.bundle.bytes.size());
    CHECK(j->manifest_sha256 == sha256_hex(serialize_manifest(n.bundle.manifest)).value());
    // before-upgrade before anything is written; after-upgrade and the keys before activation.
    CHECK(hooks == std::vector<std::string>{"before-upgrade after 0 writes",
                                            "after-upgrade after 1 writes", "keys after 1 writes"});

    SECTION("from slot B the target is A, with the tries configured") {
        Node m;
        m.control = test::MemoryBootControl(boot::initial_state(Slot::B, "1.0"));
        m.env.booted = Slot::B;
        m.env.tries = 5;
        auto r2 = m.upgrade();
        REQUIRE(r2);
        CHECK(r2->target == Slot::A);
        CHECK(m.control.state().at(Slot::A).tries == 5);
        CHECK(m.control.state().primary() == Slot::A);
        CHECK(m.slot_bytes(Slot::B) == std::string(kSlotSize, 'A'));
    }
}

TEST_CASE("upgrade flow: refusals store nothing and write nothing", "[update][upgrade]") {
    Node n;
    SECTION("no disk") {
        n.env.control = nullptr;
        n.check_refused(n.upgrade(), Errc::unavailable, "no Ballast disk");
    }
    SECTION("booted slot unknown") {
        n.env.booted.reset();
        n.check_refused(n.upgrade(), Errc::unavailable, "ballast.slot=");
    }
    SECTION("the node's compatible string unknown") {
        n.env.compatible.clear();
        n.check_refused(n.upgrade(), Errc::invalid_argument, "update.compatible");
    }
    SECTION("a bundle for other nodes") {
        n.bundle.manifest.compatible = "other-arm64";
        n.check_refused(n.upgrade(), Errc::invalid_argument, "'other-arm64'");
    }
    SECTION("an image GRUB cannot boot") {
        n.bundle.manifest.image.fstype = "erofs";
        n.check_refused(n.upgrade(), Errc::unsupported, "erofs");
    }
    SECTION("an image larger than the slot") {
        n.bundle.manifest.image.size = kSlotSize + 1;
        n.check_refused(n.upgrade(), Errc::invalid_argument, "does not fit slot B");
    }
    SECTION("the bundle changed since the interrupted write") {
        UpgradeRequest req{"/bundles/2.0"};
        req.expect_manifest_sha256 = std::string(64, '0');
        n.check_refused(n.upgrade(req), Errc::verification, "the bundle changed");
    }
    SECTION("the booted slot marked bad: the other is the only fallback (I1)") {
        auto s = n.control.state();
        s.at(Slot::A).ok = false;
        s.at(Slot::B) = {true, false, 0, "0.9"};
        n.control = test::MemoryBootControl(s);
        n.check_refused(n.upgrade(), Errc::invalid_argument, "marked bad");
    }
    SECTION("the booted slot on trial (I4)") {
        auto s = n.control.state();
        s.at(Slot::A).trial = true;
        s.at(Slot::A).tries = 2;
        n.control = test::MemoryBootControl(s);
        n.check_refused(n.upgrade(), Errc::busy, "on trial");
    }
    SECTION("a version that failed here before, unless forced") {
        REQUIRE(add_refused(refused_path(n.env.state_dir), {"2.0", "health check failed", ""}));
        n.check_refused(n.upgrade(), Errc::invalid_argument, "failed on this node");
        UpgradeRequest req{"/bundles/2.0"};
        req.force = true;
        REQUIRE(n.upgrade(req));
        CHECK(load_refused(refused_path(n.env.state_dir)).value().empty());
        CHECK(n.control.state().primary() == Slot::B);
    }
    SECTION("the before-upgrade stage fails") {
        n.env.run_stage = [](const std::string& stage) -> Status {
            if (stage == "before-upgrade")
                return fail(Errc::failed, "the before-upgrade stage failed: 1 of 2 steps failed");
            return {};
        };
        n.check_refused(n.upgrade(), Errc::failed, "before-upgrade stage failed");
    }
    SECTION("boot control unreadable") {
        n.control.fail_loads = true;
        n.check_refused(n.upgrade(), Errc::parse, "boot control");
    }
    SECTION("another upgrade holds the lock") {
        // The lock is an flock on a file: a second open file description conflicts with it.
        std::filesystem::create_directories(n.env.state_dir);
        UpgradeEnv other = n.env;
        bool inner_done = false;
        other.open = [&](const std::string& where, const SourceOptions&) -> Result<OpenedSource> {
            auto inner = update::upgrade({"/bundles/2.0"}, n.env);
            REQUIRE_FALSE(inner);
            CHECK(inner.error().code() == Errc::busy);
            CHECK(test::contains(inner.error().what(), "another upgrade is running"));
            inner_done = true;
            return n.bundle.open(where);
        };
        REQUIRE(update::upgrade({"/bundles/2.0"}, other));
        CHECK(inner_done);
    }
}

TEST_CASE("upgrade flow: the version already running is not written again", "[update][upgrade]") {
    Node n;
    n.bundle.manifest.version = "1.0";
    auto r = n.upgrade();
    REQUIRE(r);
    CHECK(r->already);
    CHECK(r->target == Slot::A);
    CHECK(n.control.saves.empty());
    CHECK_FALSE(n.journal());
    SECTION("unless forced") {
        UpgradeRequest req{"/bundles/1.0"};
        req.force = true;
        auto f = n.upgrade(req);
        REQUIRE(f);
        CHECK_FALSE(f->already);
        CHECK(n.control.state().primary() == Slot::B);
    }
}

TEST_CASE("upgrade flow: failures after the journal leave the booted slot first",
          "[update][upgrade]") {
    Node n;
    SECTION("marking the target bad fails: nothing else happens") {
        n.control.fail_save_number = 1;
        auto r = n.upgrade();
        REQUIRE_FALSE(r);
        CHECK(test::contains(r.error().what(), "mark slot B bad"));
        CHECK(n.control.saves.empty());
        CHECK_FALSE(n.journal());
        CHECK(n.slot_bytes(Slot::B) == std::string(kSlotSize, 'A'));
    }
    SECTION("the image stream breaks half way") {
        n.bundle.fail_after = n.bundle.bytes.size() / 2;
        n.check_failed_after_journal(n.upgrade(), "connection reset");
        CHECK(n.control.saves.size() == 1);
        // The header is written last: a half-written slot never looks like an image.
        CHECK(n.slot_bytes(Slot::B).substr(0, 65536) == std::string(65536, '\0'));
    }
    SECTION("the image does not match the signed hash") {
        n.bundle.bytes[100000] ^= 1;
        n.check_failed_after_journal(n.upgrade(), "sha256");
        CHECK(n.control.saves.size() == 1);
        CHECK(n.slot_bytes(Slot::B).substr(0, 65536) == std::string(65536, '\0'));
    }
    SECTION("the after-upgrade stage fails: the keys are not made") {
        bool keys = false;
        n.env.run_stage = [](const std::string& stage) -> Status {
            if (stage == "after-upgrade")
                return fail(Errc::failed, "the after-upgrade stage failed: 1 of 1 step failed");
            return {};
        };
        n.env.key_hook = [&] {
            keys = true;
            return Status{};
        };
        n.check_failed_after_journal(n.upgrade(), "after-upgrade stage failed");
        CHECK(n.control.saves.size() == 1);
        CHECK_FALSE(keys);
    }
    SECTION("the TPM2 keys for the new slot cannot be made") {
        n.env.key_hook = [] { return Status(fail(Errc::failed, "TPM unreachable (test)")); };
        n.check_failed_after_journal(n.upgrade(), "TPM unreachable");
        CHECK(n.control.saves.size() == 1);
    }
    SECTION("the activating write fails") {
        n.control.fail_save_number = 2;
        n.check_failed_after_journal(n.upgrade(), "activate");
        CHECK(n.control.saves.size() == 1);
    }
}
