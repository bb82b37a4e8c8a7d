// The operations layer without a disk image: progress arithmetic, the job report contract, the
// health verdict with fake probes and an in-memory boot control, the root's assembly order with
// a fake machine (MountIo), and what the daemon does after settling the last upgrade.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <map>

#include "ballast/core/atomic_file.hpp"
#include "ballast/ops/escrow.hpp"
#include "ballast/ops/health.hpp"
#include "ballast/ops/mount.hpp"
#include "ballast/ops/progress.hpp"
#include "ballast/ops/report.hpp"
#include "ballast/ops/slots.hpp"
#include "ballast/ops/upgrade.hpp"
#include "ballast/update/journal.hpp"
#include "ballast/update/upgrade.hpp"
#include "helpers.hpp"
#include "memory_boot.hpp"

using namespace ballast;
using boot::Slot;
using nlohmann::json;
using namespace std::chrono_literals;

// --- progress ---

TEST_CASE("ops progress: one line per percent and 200 ms, every phase's first and last",
          "[ops][progress]") {
    ops::ProgressThrottle t;
    const auto t0 = ops::Clock::time_point{} + 1h;
    CHECK(t.take({"checking", 0, 0}, t0));  // a new phase
    CHECK(t.new_phase());
    CHECK(t.take({"writing", 0, 1000}, t0));
    CHECK_FALSE(t.take({"writing", 5, 1000}, t0 + 500ms));   // same percent
    CHECK_FALSE(t.take({"writing", 20, 1000}, t0 + 100ms));  // too soon
    CHECK(t.take({"writing", 20, 1000}, t0 + 300ms));
    CHECK_FALSE(t.new_phase());
    CHECK(t.percent() == 2);
    CHECK(t.take({"writing", 1000, 1000}, t0 + 301ms));  // the end, however soon
    CHECK(t.take({"verifying", 0, 1000}, t0 + 302ms));
}

TEST_CASE("ops progress: the daemon's rate and time left", "[ops][progress]") {
    ops::ProgressMeter m;
    const auto t0 = ops::Clock::time_point{} + 1h;
    auto s = m.update({"writing", 100, 1100}, t0);
    CHECK(s.rate == 0);  // nothing measured yet
    CHECK(s.eta == -1);
    s = m.update({"writing", 150, 1100}, t0 + 100ms);
    CHECK(s.rate == 0);  // under 200 ms: noise
    s = m.update({"writing", 600, 1100}, t0 + 1s);
    CHECK(s.rate == Approx(500.0));
    CHECK(s.eta == Approx(1.0));
    CHECK(s.percent == Approx(600.0 * 100 / 1100));
    // A new phase measures from its own start.
    s = m.update({"verifying", 0, 1100}, t0 + 2s);
    CHECK(s.rate == 0);
    s = m.update({"verifying", 1100, 1100}, t0 + 3s);
    CHECK(s.rate == Approx(1100.0));
    CHECK(s.eta == Approx(0.0));
    CHECK(s.to_json() == json{{"Phase", "verifying"},
                              {"Percent", 100.0},
                              {"Bytes", 1100u},
                              {"Total", 1100u},
                              {"Rate", 1100.0},
                              {"EtaSeconds", 0.0}});
    CHECK(ops::ProgressSample::starting().to_json()["Phase"] == "starting");
}

TEST_CASE("ops progress: the job's line round trips; damage reads as empty", "[ops][progress]") {
    const ops::ProgressLine l{"writing", 5'000'000'000ull, 6'000'000'000ull};
    const auto j = l.to_json();
    auto back = ops::ProgressLine::from_json(j["progress"]);
    CHECK(back.phase == "writing");
    CHECK(back.done == 5'000'000'000ull);
    CHECK(back.total == 6'000'000'000ull);
    auto bad = ops::ProgressLine::from_json(json{{"phase", 3}, {"done", "x"}, {"total", -1}});
    CHECK(bad.phase.empty());
    CHECK(bad.done == 0);
    CHECK(bad.total == 0);
    CHECK(ops::ProgressLine::from_json(json::array()).phase.empty());
}

// --- job reports ---

TEST_CASE("ops report: a job's report, or a failure when it printed none", "[ops]") {
    CHECK(ops::job_report(json{{"ok", true}}, 0, "the stage job") == json{{"ok", true}});
    CHECK(ops::job_report(nullptr, 137, "the stage job", {{"stage", "boot"}}) ==
          json{{"ok", false},
               {"stage", "boot"},
               {"error", "the stage job ended with status 137 and no report"}});
    // Killed while writing: its last line was progress, not a report.
    CHECK(ops::job_report(ops::ProgressLine{"writing", 1, 2}.to_json(), 137, "the job")["error"] ==
          "the job ended with status 137 and no report");
    CHECK(ops::failure_report(Error(Errc::io, "disk gone"), {{"trial", false}}) ==
          json{{"ok", false}, {"error", "disk gone"}, {"trial", false}});
}

TEST_CASE("ops upgrade: the job's report as the daemon reads it", "[ops][upgrade]") {
    update::UpgradeResult r;
    r.version = "2.0";
    r.from_version = "1.0";
    r.where = "https://user:secret@updates.example.com/b.tar";
    r.target = Slot::B;
    r.bytes = 5'000'000'000ull;
    r.seconds = 12.5;
    auto back = ops::UpgradeReport::from_json(r.to_json());
    CHECK(back.ok);
    CHECK(back.result.version == "2.0");
    CHECK(back.result.from_version == "1.0");
    CHECK(back.result.target == Slot::B);
    CHECK(back.result.bytes == 5'000'000'000ull);
    CHECK(back.result.to_json() == r.to_json());
    CHECK(back.message() == "upgraded to 2.0 in slot B");
    // A delta names what it fetched; a full download does not repeat the size.
    r.downloaded = 120'000'000ull;
    back = ops::UpgradeReport::from_json(r.to_json());
    CHECK(back.result.downloaded == 120'000'000ull);
    CHECK(back.message() == "upgraded to 2.0 in slot B (120000000 of 5000000000 bytes downloaded)");
    back.result.already = true;
    CHECK(back.message() == "already running 2.0 (slot B)");
    auto failed = ops::UpgradeReport::from_json(
        ops::failure_report(Error(Errc::io, "https://user:secret@h/b.tar: timed out")));
    CHECK_FALSE(failed.ok);
    CHECK_FALSE(test::contains(failed.message(), "secret"));  // LastError is for everyone
    CHECK(test::contains(failed.message(), "upgrade: "));
    CHECK(ops::UpgradeReport::from_json(ops::job_report(nullptr, 9, "the job")).message() ==
          "upgrade: the job ended with status 9 and no report");
}

TEST_CASE("ops upgrade: sources the job accepts", "[ops][upgrade]") {
    CHECK(ops::check_source("/var/lib/bundles/2.0.tar"));
    CHECK(ops::check_source("https://updates.example.com/2.0.tar"));
    for (const char* bad : {"", "bundle.tar", "./x", "ftp://h/x"}) {
        INFO(bad);
        auto st = ops::check_source(bad);
        REQUIRE_FALSE(st);
        CHECK(st.error().code() == Errc::invalid_argument);
        CHECK(test::contains(st.error().what(),
                             "expected an absolute path, an https:// URL or an oci://"));
    }
}

// --- the health verdict ---

namespace {

health::Probe probe(std::string name, bool ok) {
    return [name, ok](std::chrono::milliseconds) {
        return health::CheckResult{name, ok, ok ? "" : "not ready"};
    };
}

boot::BootState on_trial_b() {
    auto s = boot::initial_state(Slot::A, "1.0");
    return boot::activate(s, Slot::B, 3, "2.0", Slot::A).value();
}

health::Settings quick(std::vector<std::string> units) {
    health::Settings h;
    h.units = std::move(units);
    h.deadline = 200ms;
    h.interval = 50ms;
    return h;
}

}  // namespace

TEST_CASE("ops health: a node without a disk only checks", "[ops][health]") {
    ops::HealthEnv env;
    env.unit_state = test::unit_states({{"a.service", "active"}});
    env.probes = {probe("k3s server ready", true)};
    auto r = ops::verdict(quick({"a.service"}), env);
    CHECK(r.ok);
    CHECK_FALSE(r.trial);
    CHECK(r.summary == "all 2 checks passed");
    CHECK(r.to_json() == json{{"ok", true},
                              {"health", r.health},
                              {"trial", false},
                              {"summary", "all 2 checks passed"}});
}

TEST_CASE("ops health: a slot on trial is committed or marked bad", "[ops][health]") {
    test::TempDir dir;
    test::MemoryBootControl control(on_trial_b());
    // booted from B, which is on trial (GRUB used one try)
    ops::HealthEnv env;
    env.control = &control;
    env.booted = Slot::B;
    env.state_dir = dir / "state";
    int dropped = 0;
    env.drop_stale_keys = [&] {
        ++dropped;
        return std::string("2 stale TPM2 keyslots removed");
    };
    std::vector<std::string> published;
    env.publish = [&](ops::HealthReport& r) {
        published.push_back(r.summary);
        r.published = json{{"ballast.io/slot", "B"}};
    };

    SECTION("passing: committed, stale keys dropped, published") {
        env.unit_state = test::unit_states({{"k3s.service", "active"}});
        env.probes = {probe("k3s server ready", true)};
        auto r = ops::verdict(quick({"k3s.service"}), env);
        CHECK(r.ok);
        CHECK(r.trial);
        CHECK(r.committed);
        CHECK_FALSE(r.reboot);
        CHECK(r.message == "slot B (2.0) passed its health check: committed");
        CHECK(r.keys == "2 stale TPM2 keyslots removed");
        CHECK(dropped == 1);
        CHECK(published == std::vector<std::string>{"all 2 checks passed"});
        CHECK_FALSE(control.state().at(Slot::B).trial);
        CHECK(control.state().last_good == Slot::B);
        CHECK(control.saves.size() == 1);
        CHECK(r.message_line() == r.message);
        auto j = r.to_json();
        CHECK(j["committed"] == true);
        CHECK(j["published"] == json{{"ballast.io/slot", "B"}});
        auto back = ops::HealthReport::from_json(j);
        CHECK(back.to_json() == j);
    }
    SECTION("a probe failing: marked bad, a reboot asked for, the version refused") {
        env.unit_state = test::unit_states({{"k3s.service", "active"}});
        env.probes = {probe("k3s server ready", false)};
        auto r = ops::verdict(quick({"k3s.service"}), env);
        CHECK_FALSE(r.ok);
        CHECK(r.trial);
        CHECK_FALSE(r.committed);
        CHECK(r.reboot);
        CHECK(
            test::contains(r.message, "upgrade to 2.0 failed: the health check on slot B failed"));
        CHECK(test::contains(r.message, "k3s server ready: not ready"));
        CHECK_FALSE(r.keys);
        CHECK(dropped == 0);
        CHECK_FALSE(control.state().at(Slot::B).ok);
        CHECK(boot::decide(control.state()).slot == Slot::A);
        auto refused = update::load_refused(update::refused_path(env.state_dir)).value();
        REQUIRE(refused.size() == 1);
        CHECK(refused[0].version == "2.0");
    }
    SECTION("the verdict cannot be stored: an error, not a pass") {
        env.unit_state = test::unit_states({});
        control.fail_save_number = 1;
        auto r = ops::verdict(quick({}), env);
        CHECK_FALSE(r.ok);
        REQUIRE(r.error);
        CHECK(test::contains(r.error->what(), "ESP write failed"));
        CHECK(published.empty());
        CHECK(control.state() == on_trial_b());
        auto j = r.to_json();
        CHECK(j["ok"] == false);
        CHECK(j.contains("error"));
        CHECK_FALSE(j.contains("summary"));
    }
    SECTION("a committed slot is left alone") {
        control = test::MemoryBootControl(boot::commit(on_trial_b(), Slot::B).value());
        env.unit_state = test::unit_states({});
        auto r = ops::verdict(quick({"gone.service"}), env);
        CHECK_FALSE(r.ok);
        CHECK_FALSE(r.trial);
        CHECK_FALSE(r.reboot);
        CHECK(control.saves.empty());
        CHECK(r.message_line() ==
              "health check: unit gone.service: unit gone.service is not loaded");
    }
}

TEST_CASE("ops health: Kubernetes label values", "[ops][health]") {
    CHECK(ops::label_value("1.2.0") == "1.2.0");
    CHECK(ops::label_value("1.2.0+build 7") == "1.2.0_build_7");
    CHECK(ops::label_value("-v1-") == "v1");
    CHECK(ops::label_value(std::string(80, 'a')).size() == 63);
    CHECK(ops::label_value("...") == "");
}

// --- the root's assembly ---

namespace {

// Records what the sequence asks of the machine; devices and their content are given.
class FakeMountIo final : public ops::MountIo {
  public:
    std::vector<std::string> calls;
    std::map<std::string, std::string> devices;  // path -> content ("" blank)
    Result<std::string> unlock_result = std::string("tpm2");
    Result<std::optional<ops::FinishedReset>> reset_result =
        std::optional<ops::FinishedReset>();  // none
    bool oem_blocked = false;
    bool stage_ok = true;

    bool recovery = false;
    bool recovery_asked() override { return recovery; }
    bool wait_for(const std::string& path, std::chrono::milliseconds) override {
        calls.push_back("wait " + path);
        return devices.contains(path);
    }
    Result<std::optional<ops::FinishedReset>> finish_reset(const std::string& device) override {
        if (reset_result && !*reset_result) return std::nullopt;
        calls.push_back("finish reset on the disk of " + device);
        return reset_result;
    }
    Result<std::optional<std::string>> probe(const std::string& device) override {
        calls.push_back("probe " + device);
        const auto& c = devices.at(device);
        return c.empty() ? std::nullopt : std::optional<std::string>(c);
    }
    Result<std::string> unlock(const std::string& device, const std::string& name) override {
        calls.push_back("unlock " + device + " as " + name);
        return unlock_result;
    }
    Status assemble(const std::vector<mount::Step>& steps, mount::Step::Phase phase,
                    mount::Report& report) override {
        const bool storage = phase == mount::Step::Phase::storage;
        calls.push_back(storage ? "mount storage" : "mount root");
        if (storage) {
            const auto& first = steps.front();
            calls.push_back("  persistent from " + first.source +
                            (first.blocked.empty() ? "" : " blocked: " + first.blocked));
            report.persistent = first.blocked.empty();
            for (const auto& st : steps)
                if (st.source == "/dev/disk/by-partlabel/BALLAST_OEM" && !st.blocked.empty())
                    oem_blocked = true;
        }
        return {};
    }
    bool run_stage(const char* stage) override {
        calls.push_back(std::string("stage ") + stage);
        return stage_ok;
    }
};

mount::Layout layout() {
    mount::Layout l;
    l.persistent_device = "/dev/disk/by-partlabel/BALLAST_PERSISTENT";
    l.oem_device = "/dev/disk/by-partlabel/BALLAST_OEM";
    l.persistent_paths = {"/var/lib/rancher"};
    return l;
}

}  // namespace

TEST_CASE("ops mount: the order, with an encrypted persistent partition", "[ops][mount]") {
    FakeMountIo io;
    io.devices = {{"/dev/disk/by-partlabel/BALLAST_PERSISTENT", "crypto_LUKS"},
                  {"/dev/disk/by-partlabel/BALLAST_OEM", "ext4"}};
    mount::Settings ms;
    auto r = ops::assemble_root(layout(), ms, true, io);
    REQUIRE(r);
    CHECK(io.calls == std::vector<std::string>{
                          "wait /dev/disk/by-partlabel/BALLAST_PERSISTENT",
                          "probe /dev/disk/by-partlabel/BALLAST_PERSISTENT",
                          "unlock /dev/disk/by-partlabel/BALLAST_PERSISTENT as ballast-persistent",
                          "wait /dev/disk/by-partlabel/BALLAST_OEM",
                          "mount storage",
                          "  persistent from /dev/mapper/ballast-persistent",
                          "stage rootfs",
                          "mount root",
                          "stage initramfs",
                      });
    CHECK(r->unlocked == "tpm2");
    CHECK(r->ok());
    CHECK(r->to_json()["unlocked"] == "tpm2");
}

TEST_CASE("ops mount: what goes wrong is reported, and the boot goes on", "[ops][mount]") {
    FakeMountIo io;
    mount::Settings ms;
    SECTION("a plain partition is not unlocked") {
        io.devices = {{"/dev/disk/by-partlabel/BALLAST_PERSISTENT", "ext4"}};
        auto r = ops::assemble_root(layout(), ms, false, io);
        REQUIRE(r);
        CHECK(std::find(io.calls.begin(), io.calls.end(),
                        "  persistent from /dev/disk/by-partlabel/BALLAST_PERSISTENT") !=
              io.calls.end());
        CHECK(std::none_of(io.calls.begin(), io.calls.end(),
                           [](const std::string& c) { return c.starts_with("unlock"); }));
        CHECK(std::none_of(io.calls.begin(), io.calls.end(),
                           [](const std::string& c) { return c.starts_with("stage"); }));
        CHECK_FALSE(r->unlocked);
    }
    SECTION("still locked: storage is told why, the report says so") {
        io.devices = {{"/dev/disk/by-partlabel/BALLAST_PERSISTENT", "crypto_LUKS"}};
        io.unlock_result = fail(Errc::permission_denied, "no recovery key opened it");
        auto r = ops::assemble_root(layout(), ms, true, io);
        REQUIRE(r);
        CHECK(r->unlock_error == "no recovery key opened it");
        CHECK_FALSE(r->ok());
        CHECK(std::find(io.calls.begin(), io.calls.end(),
                        "  persistent from /dev/disk/by-partlabel/BALLAST_PERSISTENT blocked: "
                        "still locked: no recovery key opened it") != io.calls.end());
        // The node comes up, for repair: no stage runs, it says why.
        CHECK(io.calls.back() == "mount root");
        CHECK(r->recovery ==
              "persistent could not be mounted: still locked: no recovery key "
              "opened it");
        CHECK(r->to_json()["recovery"]["asked"] == false);
    }
    SECTION("a pending reset is finished before persistent is unlocked") {
        io.devices = {{"/dev/disk/by-partlabel/BALLAST_PERSISTENT", "crypto_LUKS"}};
        io.reset_result = std::optional<ops::FinishedReset>({"reset /dev/vda: ...", false});
        auto r = ops::assemble_root(layout(), ms, false, io);
        REQUIRE(r);
        CHECK_FALSE(r->reset_poweroff);
        CHECK(io.calls[1] ==
              "finish reset on the disk of /dev/disk/by-partlabel/BALLAST_PERSISTENT");
        CHECK(io.calls[2] == "probe /dev/disk/by-partlabel/BALLAST_PERSISTENT");
        CHECK(r->reset == "reset /dev/vda: ...");
        CHECK(r->unlocked == "tpm2");
        CHECK(r->ok());
        CHECK(r->to_json()["reset"] == "reset /dev/vda: ...");
        CHECK_FALSE(r->to_json().contains("reset_poweroff"));
    }
    SECTION("a reset that asked for a power-off says so") {
        io.devices = {{"/dev/disk/by-partlabel/BALLAST_PERSISTENT", "ext4"}};
        io.reset_result = std::optional<ops::FinishedReset>({"reset /dev/vda: ...", true});
        auto r = ops::assemble_root(layout(), ms, false, io);
        REQUIRE(r);
        CHECK(r->reset_poweroff);
        CHECK(r->to_json()["reset_poweroff"] == true);
        CHECK(r->ok());
    }
    SECTION("a reset that does not finish: persistent is never mounted, the report says why") {
        io.devices = {{"/dev/disk/by-partlabel/BALLAST_PERSISTENT", "crypto_LUKS"}};
        io.reset_result =
            fail(Errc::unavailable, "reset of an encrypted BALLAST_PERSISTENT needs a TPM2");
        auto r = ops::assemble_root(layout(), ms, true, io);
        REQUIRE(r);
        CHECK(r->reset_error == "reset of an encrypted BALLAST_PERSISTENT needs a TPM2");
        CHECK_FALSE(r->ok());
        CHECK(std::none_of(io.calls.begin(), io.calls.end(), [](const std::string& c) {
            return c.starts_with("unlock") || c.starts_with("probe");
        }));
        CHECK(std::find(io.calls.begin(), io.calls.end(),
                        "  persistent from /dev/disk/by-partlabel/BALLAST_PERSISTENT blocked: a "
                        "factory reset is pending and did not finish: reset of an encrypted "
                        "BALLAST_PERSISTENT needs a TPM2") != io.calls.end());
        CHECK(io.calls.back() == "mount root");  // the node comes up, in recovery
        CHECK(r->recovery->find("a factory reset is pending and did not finish") !=
              std::string::npos);
        CHECK(r->to_json()["reset_error"] == *r->reset_error);
        CHECK(io.oem_blocked);
    }
    SECTION("the device never appears") {
        ms.device_timeout = 3s;
        auto r = ops::assemble_root(layout(), ms, true, io);
        REQUIRE(r);
        CHECK(io.calls[0] == "wait /dev/disk/by-partlabel/BALLAST_PERSISTENT");
        CHECK(io.calls[1] == "wait /dev/disk/by-partlabel/BALLAST_OEM");
        CHECK(io.calls[3] ==
              "  persistent from /dev/disk/by-partlabel/BALLAST_PERSISTENT blocked: "
              "/dev/disk/by-partlabel/BALLAST_PERSISTENT did not appear within 3 s");
        CHECK(r->recovery ==
              "persistent could not be mounted: "
              "/dev/disk/by-partlabel/BALLAST_PERSISTENT did not appear within 3 s");
    }
    SECTION("recovery asked for: persistent untouched, no stage") {
        io.devices = {{"/dev/disk/by-partlabel/BALLAST_PERSISTENT", "crypto_LUKS"}};
        io.reset_result = std::optional<ops::FinishedReset>({"reset /dev/vda: ...", false});
        io.recovery = true;
        auto r = ops::assemble_root(layout(), ms, true, io);
        REQUIRE(r);
        CHECK(io.calls == std::vector<std::string>{
                              "wait /dev/disk/by-partlabel/BALLAST_OEM", "mount storage",
                              "  persistent from /dev/disk/by-partlabel/BALLAST_PERSISTENT "
                              "blocked: a recovery boot (ballast.recovery) neither unlocks nor "
                              "mounts persistent",
                              "mount root"});
        CHECK(r->recovery == "asked for on the kernel command line (ballast.recovery)");
        CHECK(r->to_json()["recovery"]["asked"] == true);
        CHECK_FALSE(r->reset);
        CHECK_FALSE(r->ok());
    }
    SECTION("persistent mounted: no recovery") {
        io.devices = {{"/dev/disk/by-partlabel/BALLAST_PERSISTENT", "ext4"}};
        auto r = ops::assemble_root(layout(), ms, true, io);
        REQUIRE(r);
        CHECK_FALSE(r->recovery);
        CHECK_FALSE(r->to_json().contains("recovery"));
        CHECK(io.calls.back() == "stage initramfs");
    }
    SECTION("a failing stage fails the report, not the assembly") {
        io.devices = {{"/dev/disk/by-partlabel/BALLAST_PERSISTENT", "ext4"}};
        io.stage_ok = false;
        auto r = ops::assemble_root(layout(), ms, true, io);
        REQUIRE(r);
        CHECK_FALSE(r->stages_ok);
        CHECK_FALSE(r->ok());
        CHECK(r->to_json()["stages_ok"] == false);
    }
    SECTION("a layout that cannot be planned touches nothing") {
        auto l = layout();
        l.persistent_paths = {"var/log"};  // not absolute
        auto r = ops::assemble_root(l, ms, true, io);
        REQUIRE_FALSE(r);
        CHECK(io.calls.empty());
    }
}

TEST_CASE("ops mount: ballast.reset on the kernel command line", "[ops][mount]") {
    CHECK(ops::reset_from_cmdline("quiet root=PARTLABEL=BALLAST_A")->has_value() == false);
    CHECK(*ops::reset_from_cmdline("quiet ballast.reset") == std::optional<bool>(false));
    CHECK(*ops::reset_from_cmdline("ballast.reset=persistent") == std::optional<bool>(false));
    CHECK(*ops::reset_from_cmdline("ballast.reset=oem console=ttyS0") == std::optional<bool>(true));
    CHECK(ops::reset_from_cmdline("ballast.resetx ballast.slot=a")->has_value() == false);
    auto bad = ops::reset_from_cmdline("ballast.reset=everything");
    REQUIRE_FALSE(bad);
    CHECK(test::contains(bad.error().what(), "ballast.reset=everything is not"));
}

// --- after settling the last upgrade ---

TEST_CASE("ops slots: what the daemon does after settling", "[ops][slots]") {
    using K = ops::SettleAction::Kind;
    update::Journal j;
    j.target = Slot::B;
    j.source = "https://h/2.0.tar";
    const auto act = [&](update::Outcome what, Slot booted, std::optional<update::Journal> jj) {
        return ops::settle_action({what, "msg"}, jj, booted);
    };
    CHECK(act(update::Outcome::none, Slot::A, j).kind == K::none);
    CHECK(act(update::Outcome::failed, Slot::A, j).kind == K::failed);
    CHECK(act(update::Outcome::resume_write, Slot::A, j).kind == K::resume);
    CHECK(act(update::Outcome::resume_write, Slot::A, j).journal->source == "https://h/2.0.tar");
    auto into_booted = act(update::Outcome::resume_write, Slot::B, j);
    CHECK(into_booted.kind == K::failed);
    CHECK(into_booted.message == "msg; not resumed: slot B is the booted slot");
    CHECK(act(update::Outcome::resume_write, Slot::A, std::nullopt).kind == K::none);
    j.reboot = true;
    CHECK(act(update::Outcome::awaiting_reboot, Slot::A, j).kind == K::reboot);
    j.reboot = false;
    CHECK(act(update::Outcome::awaiting_reboot, Slot::A, j).kind == K::flag_reboot);
    CHECK(act(update::Outcome::on_trial, Slot::B, j).kind == K::wait_health);
    CHECK(act(update::Outcome::committed, Slot::B, j).kind == K::none);
}

TEST_CASE("keep_for_escrow: the key in RAM, root's alone", "[ops][escrow]") {
    test::TempDir dir;
    REQUIRE(ops::keep_for_escrow(dir.path(), "1111-2222"));
    struct stat d {
    }, f{};
    REQUIRE(::stat((dir / "escrow").c_str(), &d) == 0);
    REQUIRE(::stat((dir / "escrow/recovery-key").c_str(), &f) == 0);
    CHECK((d.st_mode & 07777) == 0700);
    CHECK((f.st_mode & 07777) == 0600);
    CHECK(read_file(dir / "escrow/recovery-key").value() == "1111-2222\n");
    // Again (a second reset in one boot): replaced, modes kept.
    REQUIRE(ops::keep_for_escrow(dir.path(), "3333-4444"));
    CHECK(read_file(dir / "escrow/recovery-key").value() == "3333-4444\n");
}
