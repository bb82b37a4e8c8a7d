#include <catch2/catch.hpp>

#include <cerrno>

#include "ballast/core/result.hpp"

using namespace ballast;

namespace {

Status write_device() {
    return fail_errno(ENOSPC, "/dev/vda4");
}
Status write_slot() {
    BALLAST_TRY_CTX(write_device(), "write slot {}", "B");
    return {};
}
Status upgrade() {
    BALLAST_TRY_CTX(write_slot(), "upgrade");
    return {};
}
Result<int> half(int v) {
    if (v % 2) return fail(Errc::invalid_argument, "{} is odd", v);
    return v / 2;
}
Result<int> quarter(int v) {
    int h = BALLAST_TRY(half(v));
    return BALLAST_TRY(half(h));
}

}  // namespace

TEST_CASE("error context chain reads outermost first", "[core][result]") {
    auto r = upgrade();
    REQUIRE_FALSE(r);
    CHECK(r.error().what() == "upgrade: write slot B: /dev/vda4: No space left on device");
    CHECK(r.error().message() == "/dev/vda4: No space left on device");
    CHECK(r.error().sys_errno() == ENOSPC);
    CHECK(r.error().code() == Errc::io);
    CHECK(r.error().context_chain() == std::vector<std::string>{"upgrade", "write slot B"});
}

TEST_CASE("BALLAST_TRY yields values and propagates errors", "[core][result]") {
    CHECK(quarter(8).value() == 2);
    auto r = quarter(6);
    REQUIRE_FALSE(r);
    CHECK(r.error().what() == "3 is odd");
    CHECK(r.error().code() == Errc::invalid_argument);
}

TEST_CASE("errno maps to error codes", "[core][result]") {
    CHECK(fail_errno(ENOENT, "x").error().code() == Errc::not_found);
    CHECK(fail_errno(-EACCES, "x").error().code() == Errc::permission_denied);
    CHECK(fail_errno(-EACCES, "x").error().sys_errno() == EACCES);
    CHECK(fail_errno(EBUSY, "").error().what() == "Device or resource busy");
    CHECK(to_string(Errc::verification) == "verification");
}

TEST_CASE("with_context passes success through", "[core][result]") {
    Result<int> ok = 5;
    CHECK(with_context(std::move(ok), "ignored").value() == 5);
    Result<int> bad = fail(Errc::busy, "job running");
    auto r = with_context(std::move(bad), "upgrade");
    CHECK(r.error().what() == "upgrade: job running");
}
