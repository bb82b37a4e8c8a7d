// Disk layout plan, FAT in-place writes on a real vfat image, the image writer, manifests.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include "ballast/boot/esp.hpp"
#include "ballast/core/atomic_file.hpp"
#include "ballast/core/process.hpp"
#include "ballast/core/sha256.hpp"
#include "ballast/disk/layout.hpp"
#include "ballast/disk/mkfs.hpp"
#include "ballast/update/bundle.hpp"
#include "ballast/update/manifest.hpp"
#include "ballast/update/writer.hpp"
#include "helpers.hpp"

using namespace ballast;
using namespace ballast::disk;

TEST_CASE("layout: fixed partition numbers, 1 MiB aligned, slots sized for the image",
          "[disk][layout]") {
    LayoutOptions o;
    o.disk_size = 2048 * kMiB;
    o.image_size = 200 * kMiB + 5;
    auto p = plan_layout(o);
    REQUIRE(p);
    REQUIRE(p->size() == 5);
    CHECK((*p)[0].label == "BALLAST_EFI");
    CHECK((*p)[2].label == "BALLAST_A");
    CHECK((*p)[2].number == 3);
    CHECK((*p)[3].number == 4);
    CHECK((*p)[2].size == 401 * kMiB);  // twice the image, rounded up
    for (const auto& x : *p)
        CHECK(x.start % kMiB == 0);
    CHECK((*p)[4].start + (*p)[4].size <= o.disk_size - 33 * 512);
    CHECK(default_slot_size(1) == 256 * kMiB);
    o.disk_size = 600 * kMiB;
    auto small = plan_layout(o);
    REQUIRE_FALSE(small);
    CHECK(small.error().what().find("too small") != std::string::npos);
    o.disk_size = 4096 * kMiB;
    o.slot_mib = 100;
    CHECK(plan_layout(o).error().what().find("cannot hold") != std::string::npos);
}

TEST_CASE("layout: install.no-format takes the existing layout only when it is whole",
          "[disk][layout]") {
    LayoutOptions o;
    o.disk_size = 2048 * kMiB;
    o.image_size = 200 * kMiB;
    auto plan = plan_layout(o);
    REQUIRE(plan);
    std::vector<FoundPartition> found;
    for (const auto& p : *plan)
        found.push_back({p.number, p.label, p.type, p.start, p.size, p.fs});
    found[2].content = "squashfs";  // a slot holds whatever it was given
    found[4].content = "crypto_LUKS";
    auto ok = check_existing_layout(found, o.image_size);
    REQUIRE(ok);
    CHECK((*ok)[2].fs.empty());
    CHECK((*ok)[4].fs == "crypto_LUKS");
    CHECK((*ok)[3].start == (*plan)[3].start);

    auto err = [&](std::vector<FoundPartition> f, uint64_t image = 200 * kMiB) {
        auto r = check_existing_layout(f, image);
        REQUIRE_FALSE(r);
        return r.error().what();
    };
    CHECK(err({}) ==
          "install.no-format: no BALLAST_EFI partition (no-format installs into an "
          "existing Ballast layout; install without it to make one)");
    auto f = found;
    std::swap(f[2].label, f[3].label);
    CHECK(err(f).find("BALLAST_A is partition 4, not 3") != std::string::npos);
    f = found;
    f[1].content = "";
    CHECK(err(f).find("BALLAST_OEM holds no filesystem, not ext4") != std::string::npos);
    f = found;
    f[0].content = "ext4";
    CHECK(err(f).find("BALLAST_EFI holds ext4, not vfat") != std::string::npos);
    CHECK(err(found, 500 * kMiB) ==
          "install.no-format: BALLAST_A is 400 MiB; the image needs 500 MiB");
}

TEST_CASE("ext4: a file put into a filesystem at an offset, replaced, read back", "[disk][ext4]") {
    test::TempDir d;
    const std::string img = (d / "disk.img").string();
    ProcessOptions tr;
    tr.argv = {"truncate", "-s", "20M", img};
    REQUIRE(run_process(tr)->success());
    REQUIRE(make_ext4(img, kMiB, 16 * kMiB, "T").has_value());
    const std::string src = (d / "10_a.yaml").string();
    REQUIRE(write_file_atomic(src, "one\n", {.mode = 0600}).has_value());
    REQUIRE(ext4_put(img, kMiB, src, "10_a.yaml").has_value());
    REQUIRE(write_file_atomic(src, "two\n", {.mode = 0600}).has_value());
    REQUIRE(ext4_put(img, kMiB, src, "10_a.yaml").has_value());
    ProcessOptions p;
    p.argv = {"debugfs", "-R", "cat /10_a.yaml", img + "?offset=" + std::to_string(kMiB)};
    auto r = run_process(p);
    REQUIRE(r);
    CHECK(r->out == "two\n");
    p.argv[2] = "stat /10_a.yaml";
    r = run_process(p);
    REQUIRE(r);
    CHECK(r->out.find("Mode:  0600") != std::string::npos);
    CHECK(ext4_put(img, kMiB, src, "../x").error().what() ==
          "ext4: '../x' is not a plain file name");
    // Not an ext4 filesystem there: the read-back says so.
    CHECK_FALSE(ext4_put(img, 0, src, "10_a.yaml"));
}

TEST_CASE("FAT: files read and rewritten in place on a real vfat filesystem", "[disk][fat]") {
    test::TempDir t;
    const std::string img = (t / "esp.img").string();
    ProcessOptions tr;
    tr.argv = {"truncate", "-s", "40M", img};
    REQUIRE(run_process(tr)->success());
    REQUIRE(make_vfat(img, 0, 40 * kMiB, "TESTESP"));
    test::write_text(t / "env", std::string(1024, 'a'));
    test::write_text(t / "long-file-name.txt", "hello world");
    REQUIRE(fat_mkdir(img, 0, "/grub/env1"));
    REQUIRE(fat_put(img, 0, (t / "env").string(), "/grub/env1/grubenv"));
    REQUIRE(fat_put(img, 0, (t / "long-file-name.txt").string(), "/grub/long-file-name.txt"));
    auto range = ByteRange::open(img, 0, 0, ByteRange::Mode::write);
    REQUIRE(range);
    auto fat = FatVolume::open(*range);
    REQUIRE(fat);
    CHECK(fat->fat_bits() == 32);
    CHECK(fat->read("/grub/long-file-name.txt").value() == "hello world");
    CHECK(fat->read("/GRUB/ENV1/GRUBENV").value() == std::string(1024, 'a'));
    REQUIRE(fat->write_in_place("/grub/env1/grubenv", std::string(1024, 'b')));
    CHECK_FALSE(fat->write_in_place("/grub/env1/grubenv", "short"));
    CHECK(fat->read("/grub/nope").error().code() == Errc::not_found);
    // mtools and fsck agree: same content, filesystem intact.
    ProcessOptions m;
    m.argv = {"mtype", "-i", img, "::/grub/env1/grubenv"};
    m.env = {"MTOOLS_SKIP_CHECK=1"};
    CHECK(run_process(m)->out == std::string(1024, 'b'));
    ProcessOptions fsck;
    fsck.argv = {"fsck.vfat", "-n", img};
    auto f = run_process(fsck);
    REQUIRE(f);
    CHECK(f->exit_code == 0);
}

TEST_CASE("image writer: hash while writing, header last, read back", "[update][writer]") {
    test::TempDir t;
    std::string image(3 * 1024 * 1024 + 777, '\0');
    for (size_t i = 0; i < image.size(); ++i)
        image[i] = char((i * 7 + i / 4096) & 0xff);
    test::write_text(t / "img", image);
    const std::string slot = (t / "slot").string();
    test::write_text(t / "slot", std::string(8 * 1024 * 1024, 'x'));
    const auto sha = sha256_hex(image).value();
    auto reader = update::file_reader((t / "img").string(), 0, image.size());
    REQUIRE(reader);
    auto st = update::write_image(*reader, image.size(), sha, slot, 1024 * 1024, 6 * 1024 * 1024);
    REQUIRE(st);
    const auto written = test::read_text(t / "slot");
    CHECK(written.substr(1024 * 1024, image.size()) == image);
    CHECK(written.substr(0, 1024 * 1024) ==
          std::string(1024 * 1024, 'x'));  // outside the slot: untouched

    // A wrong hash: the body is written, the header never is (zeroed first).
    test::write_text(t / "slot", std::string(8 * 1024 * 1024, 'x'));
    auto reader2 = update::file_reader((t / "img").string(), 0, image.size());
    auto bad = update::write_image(*reader2, image.size(), std::string(64, '0'), slot, 1024 * 1024,
                                   6 * 1024 * 1024);
    REQUIRE_FALSE(bad);
    CHECK(bad.error().what().find("left without a filesystem header") != std::string::npos);
    CHECK(test::read_text(t / "slot").substr(1024 * 1024, update::kHeaderSize) ==
          std::string(update::kHeaderSize, '\0'));

    // Too big for the slot; a short source.
    auto reader3 = update::file_reader((t / "img").string(), 0, image.size());
    CHECK_FALSE(update::write_image(*reader3, image.size(), sha, slot, 1024 * 1024, 1024 * 1024));
    auto reader4 = update::file_reader((t / "img").string(), 0, image.size() - 10);
    auto short_src =
        update::write_image(*reader4, image.size(), sha, slot, 1024 * 1024, 6 * 1024 * 1024);
    REQUIRE_FALSE(short_src);
    CHECK(short_src.error().what().find("ends at") != std::string::npos);
}

namespace {

// `m` edited as JSON: parse_manifest must refuse it with `message`.
template <class Edit>
void refused(const update::Manifest& m, Edit edit, const std::string& message) {
    auto j = m.to_json();
    edit(j);
    auto r = update::parse_manifest(j.dump());
    REQUIRE_FALSE(r);
    CHECK(r.error().what() == message);
}

}  // namespace

TEST_CASE("manifest: strict parsing", "[update][manifest]") {
    update::Manifest m;
    m.os_name = "ballast-os";
    m.version = "1.2.0";
    m.compatible = "ballast-amd64";
    m.image = {"rootfs.img", 1234, std::string(64, 'a'), "squashfs"};
    m.created = "2026-11-28T00:00:00Z";
    auto back = update::parse_manifest(update::serialize_manifest(m));
    REQUIRE(back);
    CHECK(back->to_json() == m.to_json());
    auto j = m.to_json();
    j["extra"] = 1;
    CHECK(update::parse_manifest(j.dump()).error().what() ==
          "manifest.json: unknown field 'extra'");
    j = m.to_json();
    j["image"]["file"] = "../etc/passwd";
    CHECK_FALSE(update::parse_manifest(j.dump()));
    j = m.to_json();
    j["image"]["sha256"] = "xyz";
    CHECK_FALSE(update::parse_manifest(j.dump()));
    j = m.to_json();
    j["format"] = 2;
    CHECK(update::parse_manifest(j.dump()).error().code() == Errc::unsupported);
    CHECK_FALSE(update::parse_manifest("not json"));
    CHECK_FALSE(back->index);
}

TEST_CASE("manifest: the chunk index is optional and checked like the image",
          "[update][manifest]") {
    update::Manifest m;
    m.os_name = "ballast-os";
    m.version = "1.2.0";
    m.compatible = "ballast-amd64";
    m.image = {"rootfs.img", 1234, std::string(64, 'a'), "squashfs"};
    m.index = update::Manifest::Index{"rootfs.bcidx", 84, std::string(64, 'b')};
    m.created = "2026-11-28T00:00:00Z";
    auto back = update::parse_manifest(update::serialize_manifest(m));
    REQUIRE(back);
    REQUIRE(back->index);
    CHECK(back->index->file == "rootfs.bcidx");
    CHECK(back->to_json() == m.to_json());
    using nlohmann::json;
    auto refuse = [&](auto edit, const std::string& message) { refused(m, edit, message); };
    refuse([](json& j) { j["index"] = "rootfs.bcidx"; },
           "manifest.json: 'index' must be an object");
    refuse([](json& j) { j["index"]["chunker"] = 1; },
           "manifest.json: unknown field 'index.chunker'");
    refuse([](json& j) { j["index"]["file"] = "a/b"; },
           "manifest.json: index.file 'a/b' must be a plain file name");
    refuse([](json& j) { j["index"]["file"] = "rootfs.img"; },
           "manifest.json: index.file 'rootfs.img' is the image's name");
    refuse([](json& j) { j["index"]["size"] = 0; },
           "manifest.json: index.size must be a positive number");
    refuse([](json& j) { j["index"]["sha256"] = "B"; },
           "manifest.json: index.sha256 must be 64 lower-case hex digits");
    refuse([](json& j) { j["index"].erase("sha256"); },
           "manifest.json: 'sha256' must be a printable string of at most 64 characters");
}

namespace {

// A manifest whose image carries a verity tree: 768 data blocks (3 MiB of data), then a
// superblock and 7 hash blocks.
update::Manifest verity_manifest() {
    update::Manifest m;
    m.os_name = "ballast-os";
    m.version = "1.2.0";
    m.compatible = "ballast-amd64";
    m.image = {"rootfs.img", (768 + 8) * 4096, std::string(64, 'a'), "squashfs"};
    m.verity = crypt::Verity{std::string(64, 'c'), std::string(64, 'd'),
                             "24e63182-d0d7-45e4-b3a5-4e16d1120527", 768, 768 * 4096};
    m.created = "2026-11-28T00:00:00Z";
    return m;
}

}  // namespace

TEST_CASE("manifest: the verity tree is optional and must end the image", "[update][manifest]") {
    const update::Manifest m = verity_manifest();
    auto back = update::parse_manifest(update::serialize_manifest(m));
    REQUIRE(back);
    REQUIRE(back->verity);
    CHECK(back->verity->root_hash == m.verity->root_hash);
    CHECK(back->to_json() == m.to_json());
    using nlohmann::json;
    auto refuse = [&](auto edit, const std::string& message) { refused(m, edit, message); };
    const std::string tail =
        "manifest.json: verity.hash_offset must put the hash tree of 768 "
        "blocks at the image's end (3178496 bytes)";
    refuse([](json& j) { j["verity"] = true; }, "manifest.json: 'verity' must be an object");
    refuse([](json& j) { j["verity"]["fec"] = 1; }, "manifest.json: unknown field 'verity.fec'");
    refuse([](json& j) { j["verity"]["root_hash"] = std::string(64, 'C'); },
           "manifest.json: verity.root_hash must be 64 lower-case hex digits");
    refuse([](json& j) { j["verity"]["salt"] = "abc"; },
           "manifest.json: verity.salt must be 2 to 512 lower-case hex digits");
    refuse([](json& j) { j["verity"]["uuid"] = 7; }, "manifest.json: verity.uuid must be a UUID");
    refuse([](json& j) { j["verity"]["data_blocks"] = 0; },
           "manifest.json: verity.data_blocks must be a positive number");
    refuse([](json& j) { j["verity"]["data_blocks"] = -768; },
           "manifest.json: verity.data_blocks must be a positive number");
    // Off by a block either way, unaligned, or before the data's end: the tree would not be
    // the image's exact tail.
    refuse([](json& j) { j["verity"]["hash_offset"] = 769 * 4096; }, tail);
    refuse([](json& j) { j["verity"]["hash_offset"] = 767 * 4096; }, tail);
    refuse([](json& j) { j["verity"]["hash_offset"] = 768 * 4096 + 1; }, tail);
    refuse([](json& j) { j["image"]["size"] = (768 + 9) * 4096; },
           "manifest.json: verity.hash_offset must put the hash tree of 768 blocks at the "
           "image's end (3182592 bytes)");
}

TEST_CASE("manifest: a UKI is pinned like the index and needs verity", "[update][manifest]") {
    update::Manifest m = verity_manifest();
    m.index = update::Manifest::Index{"rootfs.bcidx", 84, std::string(64, 'b')};
    m.uki = update::Manifest::Member{"uki.efi", 40u << 20, std::string(64, 'e')};
    auto back = update::parse_manifest(update::serialize_manifest(m));
    REQUIRE(back);
    REQUIRE(back->uki);
    CHECK(back->to_json() == m.to_json());
    using nlohmann::json;
    auto refuse = [&](auto edit, const std::string& message) { refused(m, edit, message); };
    refuse([](json& j) { j.erase("verity"); },
           "manifest.json: a 'uki' needs 'verity': its command line carries the image's root "
           "hash");
    refuse([](json& j) { j["uki"]["pcr11"] = "x"; }, "manifest.json: unknown field 'uki.pcr11'");
    refuse([](json& j) { j["uki"]["file"] = "EFI/uki.efi"; },
           "manifest.json: uki.file 'EFI/uki.efi' must be a plain file name");
    refuse([](json& j) { j["uki"]["file"] = "rootfs.img"; },
           "manifest.json: uki.file 'rootfs.img' is the image's name");
    refuse([](json& j) { j["uki"]["file"] = "rootfs.bcidx"; },
           "manifest.json: uki.file 'rootfs.bcidx' is the index's name");
    refuse([](json& j) { j["uki"]["size"] = 97u << 20; },
           "manifest.json: uki.size 101711872 is over 96 MiB: two must fit the ESP");
}

TEST_CASE("UKI command line: the image's root hash and hash offset, once each",
          "[update][manifest]") {
    const crypt::Verity v{std::string(64, 'c'), "dd", "u", 768, 768 * 4096};
    const std::string words = update::uki_root_hash_words(v);
    CHECK(words == "ballast.roothash=" + std::string(64, 'c') + " ballast.verity_offset=3145728");
    CHECK(update::check_uki_cmdline(words + " quiet console=ttyS0\n", v, "u"));
    CHECK(update::check_uki_cmdline("quiet " + words, v, "u"));
    auto refused_with = [&](const std::string& cmdline, const std::string& message) {
        auto st = update::check_uki_cmdline(cmdline, v, "uki.efi");
        REQUIRE_FALSE(st);
        CHECK(st.error().message() == message);
    };
    refused_with("ballast.verity_offset=3145728 quiet",
                 "uki.efi: the command line must name the image's ballast.roothash once, as "
                 "ballast.roothash=" +
                     std::string(64, 'c') + " (missing)");
    refused_with(words + " ballast.roothash=" + std::string(64, 'c'),
                 "uki.efi: the command line must name the image's ballast.roothash once, as "
                 "ballast.roothash=" +
                     std::string(64, 'c') + " (given more than once)");
    // Any other word about the root hash, however spelled, would race the initramfs.
    refused_with(words + " rd.roothash=ab",
                 "uki.efi: the command line also names 'rd.roothash', which is Ballast's to set");
    refused_with(words + " ballast.verity-offset=0",
                 "uki.efi: the command line also names 'ballast.verity-offset', which is "
                 "Ballast's to set");
    CHECK(update::names_root_hash("rd.systemd.verity_root_data"));
    CHECK(update::names_root_hash("usrhash"));
    CHECK_FALSE(update::names_root_hash("ballast.slot"));
    CHECK_FALSE(update::names_root_hash("root"));
    refused_with("ballast.roothash=" + std::string(64, 'c') + " ballast.verity_offset=4096",
                 "uki.efi: the command line must name the image's ballast.verity_offset once, "
                 "as ballast.verity_offset=3145728 (it differs)");
}
