// The step table (stages/step_modules.hpp) and the conditions (stages/conditions.hpp) against the
// decoder: every key the decoder accepts on a step is acted on by exactly one module or condition,
// or is the step's own, or is one the decoder refuses or only validates.
#include <catch2/catch.hpp>

#include <algorithm>
#include <set>
#include <string>

#include "ballast/config/decode.hpp"
#include "ballast/stages/conditions.hpp"
#include "ballast/stages/plan.hpp"
#include "ballast/stages/step_modules.hpp"
#include "helpers.hpp"

using namespace ballast;

TEST_CASE("the step table and the decoder accept the same keys", "[stages][table]") {
    std::multiset<std::string_view> acted;
    for (auto k : stages::kStepOwnKeys)
        acted.insert(k);
    for (const auto& c : stages::conditions())
        acted.insert(c.key);
    for (const auto& m : stages::step_modules())
        for (auto k : m.keys)
            acted.insert(k);
    // Accepted by the decoder so that Kairos configs load, then refused (git) or validated only
    // (packages, package_pins, unpack_images: Ballast images are immutable).
    for (std::string_view k : {"git", "packages", "package_pins", "unpack_images"})
        acted.insert(k);
    for (auto k : acted) {
        INFO(k);
        CHECK(acted.count(k) == 1);
    }
    const auto keys = config::step_keys();
    const std::multiset<std::string_view> decoded(keys.begin(), keys.end());
    CHECK(decoded == acted);
}

TEST_CASE("the dry-run plan names every condition the executor checks", "[stages][table]") {
    config::Step s;
    s.node = "^edge-";
    s.if_cmd = "test -e /etc/x";
    s.only_os = "Debian";
    s.only_os_version = "^12";
    s.only_arch = "x86_64";
    s.only_service_manager = "systemd";
    s.if_files.all = {"/etc/a"};
    s.if_files.none = {"/etc/b"};
    s.hostname = "edge-1";
    const auto lines = stages::describe_step(s);
    CHECK(lines ==
          std::vector<std::string>{
              "only on hosts matching /^edge-/", "only if: test -e /etc/x", "only on OS /Debian/",
              "only on OS version /^12/", "only on arch /x86_64/", "only under systemd",
              R"(only if files exist: all of ["/etc/a"]; none of ["/etc/b"])", "hostname edge-1"});
    // One line per condition that is set, in the order the executor checks them.
    size_t set = 0;
    for (const auto& c : stages::conditions())
        set += c.set(s);
    CHECK(set == stages::conditions().size());
}
