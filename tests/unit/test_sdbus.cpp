// D-Bus variant <-> JSON conversion, on messages built in memory (no bus needed).
#include <catch2/catch.hpp>

#include <sys/socket.h>

#include "ballast/core/fd.hpp"
#include "ballast/system/sdbus.hpp"

using namespace ballast;
using nlohmann::json;

namespace {

// Appends `value` as a{sv} to a fresh message, seals it, and reads it back.
json round_trip(const json& value) {
    // Messages need a started bus; one end of a socketpair is enough (nothing is sent).
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    UniqueFd peer(fds[1]);
    sd_bus* raw = nullptr;
    REQUIRE(sd_bus_new(&raw) >= 0);
    sdbus::Bus bus(raw);
    REQUIRE(sd_bus_set_fd(bus.get(), fds[0], fds[0]) >= 0);
    REQUIRE(sd_bus_start(bus.get()) >= 0);
    sd_bus_message* m = nullptr;
    REQUIRE(sd_bus_message_new_signal(bus.get(), &m, "/a", "a.b", "C") >= 0);
    sdbus::Message msg(m);
    REQUIRE(sdbus::append_dict(msg.get(), value));
    REQUIRE(sd_bus_message_seal(msg.get(), 1, 0) >= 0);
    REQUIRE(sd_bus_message_rewind(msg.get(), 1) >= 0);
    auto back = sdbus::read_dict(msg.get());
    // Nobody answers the authentication on the other end: close now, do not flush.
    sd_bus_close(bus.get());
    REQUIRE(back);
    return *back;
}

}  // namespace

TEST_CASE("status maps survive a D-Bus round trip", "[system][sdbus]") {
    json status = {
        {"Version", "0.1.0"},
        {"Tries", 3u},
        {"Offset", -5},
        {"Trial", true},
        {"Rate", 1.5},
        {"Units", json::array({"a.service", "b.service"})},
        {"Slots", json::array({{{"Name", "A"}, {"Good", true}}, {{"Name", "B"}, {"Good", false}}})},
        {"Nested", {{"x", "y"}}},
    };
    CHECK(round_trip(status) == status);
}

TEST_CASE("null becomes an empty string, mixed arrays become variants", "[system][sdbus]") {
    json in = {{"n", nullptr}, {"mixed", json::array({1, "two"})}};
    json out = round_trip(in);
    CHECK(out["n"] == "");
    CHECK(out["mixed"] == json::array({1, "two"}));
}
