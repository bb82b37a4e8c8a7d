// The systemd-boot backend: the loader's model (version order, counters, sdboot::menu order) and
// the backend's names, proven against that model after every single write of every transition.
#include <map>

#include <catch2/catch.hpp>

#include "ballast/boot/esp.hpp"
#include "ballast/boot/sdboot.hpp"
#include "ballast/core/process.hpp"
#include "ballast/disk/mkfs.hpp"
#include "ballast/update/uki_build.hpp"
#include "helpers.hpp"

using namespace ballast;
using namespace ballast::boot;
using namespace std::literals;

TEST_CASE("systemd's version order", "[boot][sdboot]") {
    // The order systemd documents for strverscmp_improved, oldest first.
    const std::vector<std::string> order = {"122.1",   "123~rc1-1", "123",     "123-a",
                                            "123-a.1", "123-1",     "123-1.1", "123^post1",
                                            "123.a-1", "123.1-1",   "123a-1",  "124-1"};
    for (size_t i = 0; i < order.size(); ++i)
        for (size_t j = 0; j < order.size(); ++j) {
            INFO(order[i] << " vs " << order[j]);
            CHECK(sdboot::version_compare(order[i], order[j]) == (i < j ? -1 : i > j ? 1 : 0));
        }
    CHECK(sdboot::version_compare("00123", "123") == 0);
    CHECK(sdboot::version_compare("123_a", "123a") == 0);
    CHECK(sdboot::version_compare("1.10", "1.9") == 1);
    CHECK(sdboot::version_compare("", "") == 0);
    CHECK(sdboot::version_compare("", "1") == -1);
    CHECK(sdboot::version_compare("~", "") == -1);
    CHECK(sdboot::version_compare("1.2.0", "1.2.0~rc1") == 1);
    CHECK(sdboot::version_compare("ballast-b.efi", "ballast-a+3-0.efi") == 1);
    CHECK(sdboot::version_compare("abc", "abcde") == -1);
}

TEST_CASE("boot counters as systemd-boot parses and bumps them", "[boot][sdboot]") {
    CHECK(sdboot::parse_counter("foobar+3.efi") == sdboot::Counter{3, 0});
    CHECK(sdboot::parse_counter("foobar+4-0.efi") == sdboot::Counter{4, 0});
    CHECK(sdboot::parse_counter("a+b+2-7.efi") == sdboot::Counter{2, 7});
    CHECK_FALSE(sdboot::parse_counter("foobar.efi"));
    CHECK_FALSE(sdboot::parse_counter("foobar+x.efi"));
    CHECK_FALSE(sdboot::parse_counter("foobar+3-.efi"));
    CHECK_FALSE(sdboot::parse_counter("foobar+3-0.EFI"));  // the suffix is compared exactly
    CHECK_FALSE(sdboot::parse_counter("foobar+3-0x.efi"));
    CHECK_FALSE(sdboot::parse_counter("foobar+2147483648.efi"));
    CHECK(sdboot::parse_counter("foobar+2147483647.efi") == sdboot::Counter{2147483647, 0});
    // systemd's own series.
    std::string n = "foobar+3.efi";
    std::vector<std::string> series;
    for (int i = 0; i < 4; ++i) {
        n = sdboot::next_name(n, *sdboot::parse_counter(n));
        series.push_back(n);
    }
    CHECK(series == std::vector<std::string>{"foobar+2-1.efi", "foobar+1-2.efi", "foobar+0-3.efi",
                                             "foobar+0-4.efi"});
    CHECK(sdboot::with_counter("x+1-2.efi", std::nullopt) == "x.efi");
    CHECK(sdboot::with_counter("x.efi", sdboot::Counter{3, 0}) == "x+3-0.efi");
}

TEST_CASE("os-release fields the loader sorts by", "[boot][sdboot]") {
    auto id = sdboot::identity(
        "NAME=\"Debian GNU/Linux\"\nID=debian\nVERSION_ID=\"12\"\nVERSION=\"12 "
        "(bookworm)\"\n");
    REQUIRE(id);
    CHECK(id->sort_key == "debian");
    CHECK(id->version == "12 (bookworm)");
    id = sdboot::identity(
        "  # c\r\nID=debian\r\nIMAGE_ID=ballast\t\nIMAGE_VERSION=\"2.0\"\nBUILD_ID=7\n");
    REQUIRE(id);
    CHECK(id->sort_key == "ballast");
    CHECK(id->version == "2.0");
    id = sdboot::identity("ID=x\nBUILD_ID=7\nID=y\0IMAGE_ID=hidden\n"sv);
    REQUIRE(id);
    CHECK(id->sort_key == "y");
    CHECK(id->version == "7");
    CHECK(sdboot::identity("PRETTY_NAME=\"\"\n")->sort_key == std::nullopt);
    CHECK_FALSE(sdboot::identity("VERSION_ID=1\nHOME_URL=x\n"));
    CHECK_FALSE(sdboot::identity("ID\n"));
    CHECK(sdboot::identity("ID==\"\n")->sort_key == "");
}

TEST_CASE("the loader's menu order", "[boot][sdboot]") {
    const sdboot::Identity v1{"debian", "1.0"}, v2{"debian", "2.0"}, other{"alpine", "9"};
    auto order = [](std::vector<sdboot::Entry> e) {
        std::vector<std::string> names;
        for (const auto& x : sdboot::menu(std::move(e)))
            names.push_back(x.file);
        return names;
    };
    CHECK(order({{"a.efi", v1}, {"b.efi", v2}}) == std::vector<std::string>{"b.efi", "a.efi"});
    // No tries left: last, whatever the version.
    CHECK(order({{"a.efi", v1}, {"b+0-3.efi", v2}}) ==
          std::vector<std::string>{"a.efi", "b+0-3.efi"});
    CHECK(order({{"a+0-1.efi", v1}, {"b+0-3.efi", v2}}) ==
          std::vector<std::string>{"b+0-3.efi", "a+0-1.efi"});
    // The sort key before the version; an entry without one after those with one.
    CHECK(order({{"a.efi", other}, {"b.efi", v2}}) == std::vector<std::string>{"a.efi", "b.efi"});
    CHECK(order({{"a.efi", {std::nullopt, "9"}}, {"b.efi", v1}}) ==
          std::vector<std::string>{"b.efi", "a.efi"});
    // Same identity: the file name, newest first, case folded.
    CHECK(order({{"ballast-A.efi", v1}, {"ballast-b+3-0.efi", v1}}) ==
          std::vector<std::string>{"ballast-b+3-0.efi", "ballast-A.efi"});
    CHECK_FALSE(sdboot::listed_name(".hidden.efi"));
    CHECK_FALSE(sdboot::listed_name("auto-x.efi"));
    CHECK_FALSE(sdboot::listed_name("ballast-a.off"));
    CHECK(sdboot::listed_name("x.EFI"));
}

namespace {

// The ESP in memory: the record's two blocks and /EFI/Linux. Every write (a block, a rename, a
// dropped alias) is one step; with a cut set, that step and all after it fail, as at a power cut.
// A file's content as the store sees it: its .osrel identity and where its data starts (a copy
// made by assignment from an identity gets data of its own; one copied from another file shares
// that file's data, as a cut rename's two names do).
struct MemFile {
    MemFile() = default;
    MemFile(const sdboot::Identity& i) : id(i), data(next_data()) {}  // NOLINT: implicit
    sdboot::Identity id;
    uint64_t data = 0;
    bool operator==(const MemFile&) const = default;
    static uint64_t next_data() {
        static uint64_t n = 0;
        return ++n;
    }
};

struct MemoryEsp {
    std::map<int, std::string> blocks;
    std::map<std::string, MemFile> files;  // name -> content
    long steps = 0, cut = -1;
    bool cut_reached() { return steps++ >= cut && cut >= 0; }
};

class MemEnv final : public EnvStore {
  public:
    explicit MemEnv(MemoryEsp& e) : e_(e) {}
    Result<std::string> read(int copy) override {
        if (!e_.blocks.contains(copy)) return fail(Errc::not_found, "no copy {}", copy);
        return e_.blocks[copy];
    }
    Status write(int copy, std::string_view block) override {
        if (e_.cut_reached()) return fail(Errc::io, "power cut");
        e_.blocks[copy] = std::string(block);
        return {};
    }

  private:
    MemoryEsp& e_;
};

class MemUkis final : public UkiStore {
  public:
    explicit MemUkis(MemoryEsp& e) : e_(e) {}
    Result<std::vector<File>> list() override {
        std::vector<File> out;
        for (const auto& [n, f] : e_.files)
            out.push_back({n, f.id, f.data, 1});
        return out;
    }
    Status rename(const std::string& from, const std::string& to) override {
        if (e_.files.contains(to)) return fail(Errc::exists, "{} exists", to);
        if (e_.cut_reached()) return fail(Errc::io, "power cut");
        auto id = e_.files.at(from);
        e_.files.erase(from);
        e_.files[to] = id;
        return {};
    }
    Status tidy() override { return {}; }
    Status drop_alias(const std::string& alias) override {
        if (e_.cut_reached()) return fail(Errc::io, "power cut");
        e_.files.erase(alias);
        return {};
    }

  private:
    MemoryEsp& e_;
};

UkiListing listing_of(const MemoryEsp& e) {
    std::vector<UkiStore::File> files;
    for (const auto& [n, f] : e.files)
        files.push_back({n, f.id, f.data, 1});
    return read_listing(files);
}

// systemd-boot starting the machine once: the first entry, renamed before it starts.
std::optional<Slot> boot_once(MemoryEsp& e) {
    auto l = listing_of(e);
    auto s = loader_choice(l);
    if (!s) return s;
    const auto& f = *l.at(*s);
    if (f.counter) {
        auto id = e.files.at(f.name);
        e.files.erase(f.name);
        e.files[sdboot::next_name(f.name, *f.counter)] = id;
    }
    return s;
}

const sdboot::Identity kV1{"debian", "1.0"}, kV2{"debian", "2.0"};

// A disk installed to A (kV1), and B's UKI copied in, not yet activated.
MemoryEsp installed(const sdboot::Identity& a, const sdboot::Identity& b) {
    MemoryEsp e;
    e.files[hidden_uki_name(Slot::A)] = a;
    MemEnv env(e);
    MemUkis ukis(e);
    SdBootControl c(env, ukis);
    REQUIRE(c.initialize(initial_state(Slot::A, "1.0")));
    e.files[hidden_uki_name(Slot::B)] = b;
    return e;
}

BootState load(MemoryEsp& e, bool repair = true) {
    MemEnv env(e);
    MemUkis ukis(e);
    SdBootControl c(env, ukis);
    auto s = c.load(repair);
    REQUIRE(s);
    return *s;
}

void save(MemoryEsp& e, const BootState& s) {
    MemEnv env(e);
    MemUkis ukis(e);
    SdBootControl c(env, ukis);
    auto st = c.save(s);
    INFO((st ? "" : st.error().what()));
    REQUIRE(st);
}

// Cuts the save of `to` after every step, and checks what the loader starts then, and that
// loading (which finishes the record's renames) gives `to` or `from`, with the loader starting
// what decide() says for it.
void cut_everywhere(const MemoryEsp& start, const BootState& to) {
    const BootState from = load(const_cast<MemoryEsp&>(start), false);
    long total = 0;
    {
        MemoryEsp e = start;
        save(e, to);
        total = e.steps;
        CHECK(total >= 6);  // the record: two copies, three writes each; then the renames
    }
    const auto before = loader_choice(listing_of(start));
    MemoryEsp done = start;
    save(done, to);
    const auto after = loader_choice(listing_of(done));
    for (long k = 0; k <= total; ++k) {
        INFO("cut at step " << k << " of " << total);
        MemoryEsp e = start;
        e.cut = k;
        {
            MemEnv env(e);
            MemUkis ukis(e);
            SdBootControl c(env, ukis);
            (void)c.save(to);
        }
        const auto now = loader_choice(listing_of(e));
        CHECK((now == before || now == after));
        e.cut = -1;
        const BootState loaded = load(e);
        CHECK((loaded == merge(to, listing_of(e)) || loaded == from));
        CHECK(loader_choice(listing_of(e)) == decide(loaded).slot);
    }
}

}  // namespace

TEST_CASE("systemd-boot backend: names for install, upgrade, commit", "[boot][sdboot]") {
    MemoryEsp e = installed(kV1, kV2);
    CHECK(e.files.contains("ballast-a.efi"));
    BootState s = load(e);
    CHECK(s == initial_state(Slot::A, "1.0"));

    // An upgrade to a newer release: B on trial, A stays uncounted (it sorts after B).
    auto staged = activate(begin_write(s, Slot::B, Slot::A).value(), Slot::B, 3, "2.0", Slot::A);
    REQUIRE(staged);
    cut_everywhere(e, *staged);
    save(e, *staged);
    CHECK(e.files.contains("ballast-b+3-0.efi"));
    CHECK(e.files.contains("ballast-a.efi"));
    CHECK(load(e) == *staged);

    // The first try: the loader counts it; the state reads the loader's count.
    CHECK(boot_once(e) == Slot::B);
    CHECK(e.files.contains("ballast-b+2-1.efi"));
    s = load(e);
    CHECK(s.at(Slot::B).tries == 2);
    CHECK(s.at(Slot::B).trial);

    // The health check commits B: one rename to the uncounted name.
    auto committed = commit(s, Slot::B);
    REQUIRE(committed);
    cut_everywhere(e, *committed);
    save(e, *committed);
    CHECK(e.files.contains("ballast-b.efi"));
    CHECK(load(e) == *committed);
    for (int i = 0; i < 3; ++i)
        CHECK(boot_once(e) == Slot::B);  // a committed system never changes slots (I4)
}

TEST_CASE("systemd-boot backend: a trial that fails falls back, then is marked bad",
          "[boot][sdboot]") {
    MemoryEsp e = installed(kV1, kV2);
    auto staged =
        activate(begin_write(load(e), Slot::B, Slot::A).value(), Slot::B, 2, "2.0", Slot::A);
    save(e, *staged);
    CHECK(boot_once(e) == Slot::B);
    CHECK(boot_once(e) == Slot::B);
    CHECK(boot_once(e) == Slot::A);  // spent: the loader sorts B last
    BootState s = load(e);
    CHECK(s.at(Slot::B).trial);
    CHECK(s.at(Slot::B).tries == 0);
    CHECK(decide(s).slot == Slot::A);
    auto bad = mark_bad(s, Slot::B);
    REQUIRE(bad);
    cut_everywhere(e, *bad);
    save(e, *bad);
    CHECK(e.files.contains("ballast-b.off"));
    CHECK(load(e) == *bad);
}

TEST_CASE("systemd-boot backend: an older release on trial holds the newer one back",
          "[boot][sdboot]") {
    // A runs 2.0; B gets 1.0 (a downgrade the operator allowed). The loader sorts 2.0 first, so A
    // is given a spent counter while B is tried, and comes back first once B's tries are spent.
    MemoryEsp e = installed(kV2, kV1);
    auto staged =
        activate(begin_write(load(e), Slot::B, Slot::A).value(), Slot::B, 2, "1.0", Slot::A);
    cut_everywhere(e, *staged);
    save(e, *staged);
    CHECK(e.files.contains("ballast-a+0-0.efi"));
    CHECK(e.files.contains("ballast-b+2-0.efi"));
    CHECK(load(e) == *staged);
    CHECK(boot_once(e) == Slot::B);
    CHECK(boot_once(e) == Slot::B);
    CHECK(boot_once(e) == Slot::A);
    BootState s = load(e);
    CHECK(s.at(Slot::A).ok);
    CHECK_FALSE(s.at(Slot::A).trial);
    CHECK(decide(s).slot == Slot::A);

    // Had B passed: committed, A stays held back (ok, not primary); rollback brings A first.
    MemoryEsp e2 = installed(kV2, kV1);
    save(e2, *staged);
    CHECK(boot_once(e2) == Slot::B);
    auto committed = commit(load(e2), Slot::B);
    cut_everywhere(e2, *committed);
    save(e2, *committed);
    CHECK(e2.files.contains("ballast-b.efi"));
    CHECK(e2.files.contains("ballast-a+0-0.efi"));
    CHECK(boot_once(e2) == Slot::B);
    auto back = rollback(load(e2), Slot::B);
    REQUIRE(back);
    cut_everywhere(e2, *back);
    save(e2, *back);
    CHECK(e2.files.contains("ballast-a.efi"));
    CHECK(e2.files.contains("ballast-b.efi"));  // 1.0 sorts after 2.0 on its own
    CHECK(boot_once(e2) == Slot::A);
}

TEST_CASE("systemd-boot backend: the same release in both slots", "[boot][sdboot]") {
    // Same identity: the file name decides, and "ballast-b" sorts before "ballast-a".
    for (Slot target : {Slot::A, Slot::B}) {
        INFO("target " << name(target));
        MemoryEsp e;
        const Slot booted = other(target);
        e.files[hidden_uki_name(booted)] = kV1;
        save(e, initial_state(booted, "1.0"));
        e.files[hidden_uki_name(target)] = kV1;
        auto staged =
            activate(begin_write(load(e), target, booted).value(), target, 1, "1.0", booted);
        cut_everywhere(e, *staged);
        save(e, *staged);
        CHECK(boot_once(e) == target);
        CHECK(boot_once(e) == booted);
        CHECK(boot_once(e) == booted);
    }
}

TEST_CASE("systemd-boot backend refuses what the loader would not do", "[boot][sdboot]") {
    MemoryEsp e = installed(kV1, kV2);
    const auto files = e.files;
    // B has a UKI only once it is copied in; a slot without one cannot be made bootable.
    e.files.erase(hidden_uki_name(Slot::B));
    auto staged =
        activate(begin_write(load(e), Slot::B, Slot::A).value(), Slot::B, 3, "2.0", Slot::A);
    MemEnv env(e);
    MemUkis ukis(e);
    SdBootControl c(env, ukis);
    auto blocks = e.blocks;
    CHECK(c.save(*staged).error().what() ==
          "slot B has no UKI in /EFI/Linux: it cannot be made bootable");
    CHECK(e.blocks == blocks);  // nothing written

    // A foreign UKI that sorts first (a newer version of the same OS).
    e.files = files;
    e.files["other.efi"] = sdboot::Identity{"debian", "9.0"};
    auto st = c.save(*staged);
    REQUIRE_FALSE(st);
    CHECK(st.error().what().find("/EFI/Linux/other.efi (not Ballast's)") != std::string::npos);
    CHECK(e.blocks == blocks);

    // No recovery entry yet.
    e.files = files;
    BootState r = load(e);
    r.recovery_next = true;
    CHECK(c.save(r).error().code() == Errc::unsupported);

    // A UKI without an .osrel: the loader would not list it.
    e.files = files;
    UkiStore::File f;
    MemoryEsp bare;
    bare.files = files;
    auto l = listing_of(bare);
    l.slots[1]->identity.reset();
    CHECK(plan(*staged, l).error().what().find("no .osrel section") != std::string::npos);
}

TEST_CASE("systemd-boot backend: a rename cut between its directory writes", "[boot][sdboot]") {
    MemoryEsp e = installed(kV1, kV2);
    auto staged =
        activate(begin_write(load(e), Slot::B, Slot::A).value(), Slot::B, 3, "2.0", Slot::A);
    save(e, *staged);
    // The loader's own rename left both names (the same data twice in the directory).
    e.files["ballast-b+2-1.efi"] = e.files.at("ballast-b+3-0.efi");
    auto l = listing_of(e);
    REQUIRE(l.aliases.size() == 1);
    CHECK(l.aliases[0] == "ballast-b+2-1.efi");  // the loader tries +3-0 first
    BootState s = load(e);
    CHECK_FALSE(e.files.contains("ballast-b+2-1.efi"));
    CHECK(s.at(Slot::B).tries == 3);

    // A stale copy under a slot's name (different data) is put aside, out of the menu.
    e.files["ballast-b.efi"] = kV2;
    s = load(e);
    CHECK(e.files.contains("stale-ballast-b.efi.off"));
    CHECK(e.files.contains("ballast-b+3-0.efi"));
    CHECK(s.at(Slot::B).tries == 3);

    // Put aside again, with a cut after the new name: the same file under both; the old name
    // is dropped, and another stale copy gets a name of its own.
    e.files["ballast-b.efi"] = e.files.at("stale-ballast-b.efi.off");
    s = load(e);
    CHECK_FALSE(e.files.contains("ballast-b.efi"));
    e.files["ballast-b.efi"] = kV1;
    s = load(e);
    CHECK(e.files.contains("stale-ballast-b.efi.1.off"));
    CHECK(s.at(Slot::B).tries == 3);

    // A status read (no repair) writes nothing.
    e.files["ballast-a+0-0.efi"] = e.files.at("ballast-a.efi");
    const auto before = e.files;
    (void)load(e, false);
    CHECK(e.files == before);
}

TEST_CASE("systemd-boot backend: the record ahead of the names is finished at load",
          "[boot][sdboot]") {
    MemoryEsp e = installed(kV1, kV2);
    auto staged =
        activate(begin_write(load(e), Slot::B, Slot::A).value(), Slot::B, 3, "2.0", Slot::A);
    // Cut right after the record: B is still not listed; a status read says so.
    MemoryEsp cut = e;
    {
        MemEnv env(cut);
        MemUkis ukis(cut);
        GrubBootControl record(env);
        REQUIRE(record.save(*staged));
    }
    CHECK_FALSE(load(cut, false).at(Slot::B).ok);
    CHECK(loader_choice(listing_of(cut)) == Slot::A);
    // The agent's next load finishes the activation.
    CHECK(load(cut) == *staged);
    CHECK(cut.files.contains("ballast-b+3-0.efi"));

    // When the record asks for a UKI that is gone, the names are the state, and nothing is
    // written: the record stays as it was.
    MemoryEsp gone = e;
    {
        MemEnv env(gone);
        GrubBootControl record(env);
        REQUIRE(record.save(*staged));
    }
    gone.files.erase(hidden_uki_name(Slot::B));
    BootState s = load(gone);
    CHECK_FALSE(s.at(Slot::B).ok);
    CHECK(decide(s).slot == Slot::A);
    MemEnv env(gone);
    GrubBootControl record(env);
    CHECK(record.load().value() == *staged);
}

namespace {

// A UKI as far as the loader's listing goes: Debian's stub with an .osrel added by objcopy.
std::string make_uki(const test::TempDir& t, const std::string& name, const std::string& osrel) {
    test::write_text(t / (name + ".osrel"), osrel);
    ProcessOptions p;
    p.argv = {"objcopy",
              "--add-section",
              ".osrel=" + (t / (name + ".osrel")).string(),
              "--change-section-vma",
              ".osrel=0x20000",
              update::kDefaultStub,
              (t / name).string()};
    auto r = run_process(p);
    REQUIRE(r);
    INFO(r->err);
    REQUIRE(r->success());
    return (t / name).string();
}

std::vector<std::string> uki_dir(const std::string& img) {
    auto range = disk::ByteRange::open(img, 0, 0, disk::ByteRange::Mode::read);
    REQUIRE(range);
    auto fat = disk::FatVolume::open(*range);
    REQUIRE(fat);
    std::vector<std::string> names;
    const auto entries = fat->list(kUkiDir).value();
    for (const auto& e : entries)
        names.push_back(e.name);
    std::sort(names.begin(), names.end());
    return names;
}

void fsck_clean(const std::string& img) {
    ProcessOptions p;
    p.argv = {"fsck.vfat", "-n", img};
    auto r = run_process(p);
    REQUIRE(r);
    INFO(r->out);
    CHECK(r->exit_code == 0);
}

}  // namespace

TEST_CASE("systemd-boot backend on a real ESP: mtools renames, identities read from the PE",
          "[boot][sdboot][fat]") {
    test::TempDir t;
    const std::string img = (t / "esp.img").string();
    ProcessOptions tr;
    tr.argv = {"truncate", "-s", "64M", img};
    REQUIRE(run_process(tr)->success());
    REQUIRE(disk::make_vfat(img, 0, 64 * 1024 * 1024, "TESTESP"));
    REQUIRE(disk::fat_mkdir(img, 0, "/EFI/Linux"));
    REQUIRE(disk::fat_mkdir(img, 0, "/loader/ballast"));
    test::write_text(t / "env", std::string(1024, '#'));
    REQUIRE(disk::fat_put(img, 0, (t / "env").string(), kSdBootRecord1));
    REQUIRE(disk::fat_put(img, 0, (t / "env").string(), kSdBootRecord2));
    // A runs 2.0 and B gets 1.0: the case where the names must hold A back.
    REQUIRE(disk::fat_put(img, 0, make_uki(t, "a.efi", "ID=debian\nVERSION_ID=\"2.0\"\n"),
                          "/EFI/Linux/ballast-a.off"));
    REQUIRE(disk::fat_put(img, 0, make_uki(t, "b.efi", "ID=debian\nVERSION_ID=1.0\n"),
                          "/EFI/Linux/ballast-b.off"));
    REQUIRE(disk::fat_put(img, 0, (t / "env").string(), "/EFI/Linux/notes.txt"));

    auto esp = Esp::open(img, 0, 0);
    REQUIRE(esp);
    FatEnvStore record(**esp, kSdBootRecord1, kSdBootRecord2);
    FatUkiStore ukis(**esp);
    auto files = ukis.list();
    REQUIRE(files);
    REQUIRE(files->size() == 3);
    for (const auto& f : *files)
        if (f.name == "ballast-a.off")
            CHECK(f.identity == sdboot::Identity{"debian", "2.0"});
        else if (f.name == "notes.txt")
            CHECK_FALSE(f.identity);

    SdBootControl c(record, ukis);
    REQUIRE(c.initialize(initial_state(Slot::A, "2.0")));
    CHECK(uki_dir(img) == std::vector<std::string>{"ballast-a.efi", "ballast-b.off", "notes.txt"});
    auto staged = activate(begin_write(c.load().value(), Slot::B, Slot::A).value(), Slot::B, 3,
                           "1.0", Slot::A);
    REQUIRE(c.save(*staged));
    CHECK(uki_dir(img) ==
          std::vector<std::string>{"ballast-a+0-0.efi", "ballast-b+3-0.efi", "notes.txt"});
    fsck_clean(img);
    // The loader's try, as its rename leaves it.
    REQUIRE((*esp)->fat().rename(kUkiDir, "ballast-b+3-0.efi", "ballast-b+2-1.efi"));
    auto s = c.load();
    REQUIRE(s);
    CHECK(s->at(Slot::B).tries == 2);
    REQUIRE(c.save(commit(*s, Slot::B).value()));
    CHECK(uki_dir(img) ==
          std::vector<std::string>{"ballast-a+0-0.efi", "ballast-b.efi", "notes.txt"});
    CHECK(c.load().value() == commit(*s, Slot::B).value());
    fsck_clean(img);

    // Bad renames are refused with nothing changed.
    const auto before = uki_dir(img);
    CHECK((*esp)->fat().rename(kUkiDir, "ballast-b.efi", "NOTES.TXT").error().code() ==
          Errc::exists);
    CHECK((*esp)->fat().rename(kUkiDir, "ballast-b.efi", "a/b.efi").error().code() ==
          Errc::invalid_argument);
    CHECK((*esp)->fat().rename(kUkiDir, "nope.efi", "x.efi").error().code() == Errc::not_found);
    CHECK(uki_dir(img) == before);
    fsck_clean(img);

    // A name that is not a second name of another file's data is never dropped.
    CHECK((*esp)->fat().drop_alias(kUkiDir, "ballast-b.efi").error().code() ==
          Errc::invalid_argument);
    CHECK((*esp)->fat().read_range("/EFI/Linux/notes.txt", 1020, 100).value() == "####");
}

TEST_CASE("the slot systemd-boot started, from LoaderEntrySelected", "[boot][sdboot]") {
    CHECK(slot_of_uki_name("ballast-b+3-0.efi") == Slot::B);
    CHECK(slot_of_uki_name("BALLAST-A.EFI") == Slot::A);
    CHECK_FALSE(slot_of_uki_name("ballast-a.off"));
    CHECK_FALSE(slot_of_uki_name("debian.efi"));
    test::TempDir t;
    auto put = [&](std::string_view id) {
        std::string data("\x07\0\0\0", 4);
        for (char c : id)
            data += std::string{c, '\0'};
        data += std::string(2, '\0');
        test::write_text(t / ("LoaderEntrySelected-" + std::string(kLoaderGuid)), data);
    };
    CHECK(booted_slot_from_loader(t.path().string()).value() == std::nullopt);
    put("ballast-b+2-1.efi");
    CHECK(booted_slot_from_loader(t.path().string()).value() == Slot::B);
    put("debian-6.1.efi");
    CHECK(booted_slot_from_loader(t.path().string()).value() == std::nullopt);
    test::write_text(t / ("LoaderEntrySelected-" + std::string(kLoaderGuid)),
                     std::string("\x07\0\0\0b\0\xe9\0", 8));
    CHECK(booted_slot_from_loader(t.path().string()).value() == std::nullopt);
    CHECK(ascii_of_ucs2(std::string("a\0b\0\0\0z\0", 8)) == "ab");
}
