#include <catch2/catch.hpp>

#include <sys/stat.h>

#include "ballast/core/atomic_file.hpp"
#include "helpers.hpp"

using namespace ballast;
using ballast::test::TempDir;

namespace {
size_t entries(const std::filesystem::path& dir) {
    size_t n = 0;
    for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator(dir))
        ++n;
    return n;
}
}  // namespace

TEST_CASE("atomic write creates a file with content and mode", "[core][atomic]") {
    TempDir t;
    auto p = t / "state.json";
    REQUIRE(write_file_atomic(p, "hello\n", {.mode = 0600}));
    CHECK(test::read_text(p) == "hello\n");
    struct stat st {};
    REQUIRE(::stat(p.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0600);
    CHECK(entries(t.path()) == 1);  // no temporary left behind
}

TEST_CASE("atomic write replaces an existing file whole", "[core][atomic]") {
    TempDir t;
    auto p = t / "f";
    test::write_text(p, std::string(10000, 'x'));
    REQUIRE(write_file_atomic(p, "short"));
    CHECK(test::read_text(p) == "short");
    CHECK(entries(t.path()) == 1);
}

TEST_CASE("atomic write into a missing directory fails and leaves nothing", "[core][atomic]") {
    TempDir t;
    auto r = write_file_atomic(t / "missing/f", "x");
    REQUIRE_FALSE(r);
    CHECK(r.error().code() == Errc::not_found);
    CHECK(r.error().what().find(t.path().string() + "/missing") != std::string::npos);
    CHECK(entries(t.path()) == 0);
}

TEST_CASE("atomic write over a directory fails and keeps it", "[core][atomic]") {
    TempDir t;
    std::filesystem::create_directory(t / "d");
    test::write_text(t / "d" / "keep", "data");
    auto r = write_file_atomic(t / "d", "x");
    REQUIRE_FALSE(r);
    CHECK(test::read_text(t / "d" / "keep") == "data");
    CHECK(entries(t.path()) == 1);
}

TEST_CASE("read_file reads and bounds size", "[core][atomic]") {
    TempDir t;
    test::write_text(t / "f", "abc");
    CHECK(read_file(t / "f").value() == "abc");
    auto big = read_file(t / "f", 2);
    REQUIRE_FALSE(big);
    CHECK(big.error().code() == Errc::invalid_argument);
    auto missing = read_file(t / "nope");
    REQUIRE_FALSE(missing);
    CHECK(missing.error().sys_errno() == ENOENT);
    auto dir = read_file(t.path());
    REQUIRE_FALSE(dir);
    CHECK(dir.error().what().find("is a directory") != std::string::npos);
}
