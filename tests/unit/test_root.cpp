#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include "ballast/core/root.hpp"
#include "helpers.hpp"

using namespace ballast;

TEST_CASE("node paths are normalised", "[core][root]") {
    CHECK(RootPrefix::normalize("/etc//ballast/./agent.yaml").value() == "/etc/ballast/agent.yaml");
    CHECK(RootPrefix::normalize("/etc/../var").value() == "/var");
    CHECK(RootPrefix::normalize("/").value() == "/");
    CHECK_FALSE(RootPrefix::normalize("etc/hostname"));
    CHECK_FALSE(RootPrefix::normalize(""));
    auto esc = RootPrefix::normalize("/etc/../../x");
    REQUIRE_FALSE(esc);
    CHECK(esc.error().what() == "/etc/../../x: climbs above the root");
}

TEST_CASE("resolve maps node paths into the root", "[core][root]") {
    RootPrefix host;
    CHECK(host.is_host_root());
    CHECK(host.resolve("/etc/hostname").value() == "/etc/hostname");

    RootPrefix r("/tmp/img/");
    CHECK_FALSE(r.is_host_root());
    CHECK(r.base() == "/tmp/img");
    CHECK(r.resolve("/etc/hostname").value() == "/tmp/img/etc/hostname");
    CHECK(r.resolve("/").value() == "/tmp/img");
    CHECK(r("/run/ballast") == "/tmp/img/run/ballast");
    CHECK_FALSE(r.resolve("/../etc/shadow"));
}

TEST_CASE("open_beneath keeps symlinks inside the root", "[core][root]") {
    test::TempDir outside, t;
    test::write_text(outside / "secret", "host data");
    std::filesystem::create_directories(t / "etc");
    // An image may carry absolute or climbing symlinks; they must resolve inside the root.
    std::filesystem::create_symlink(outside / "secret", t / "etc/abs-link");
    std::filesystem::create_symlink("../../../../../../" + (outside / "secret").string(),
                                    t / "etc/climb-link");

    RootPrefix r(t.path());
    auto abs = r.open_beneath("/etc/abs-link", O_RDONLY);
    REQUIRE_FALSE(abs);  // resolves to ROOT/<outside>/secret, which does not exist
    CHECK(abs.error().code() == Errc::not_found);
    CHECK_FALSE(r.open_beneath("/etc/climb-link", O_RDONLY));

    auto created = r.open_beneath("/etc/new", O_WRONLY | O_CREAT | O_EXCL, 0640);
    REQUIRE(created);
    CHECK(::write(created->get(), "x", 1) == 1);
    CHECK(test::read_text(t / "etc/new") == "x");
    CHECK(test::read_text(outside / "secret") == "host data");
}
