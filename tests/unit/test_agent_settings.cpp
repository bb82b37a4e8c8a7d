#include <catch2/catch.hpp>

#include "ballast/config/agent_settings.hpp"
#include "ballast/config/yaml.hpp"
#include "helpers.hpp"

using namespace ballast;
using namespace ballast::config;

TEST_CASE("agent settings: defaults and values", "[config][settings]") {
    auto empty = parse_agent_settings("", "agent.yaml");
    REQUIRE(empty);
    CHECK(empty->log_level == "info");
    CHECK(empty->disk.empty());
    auto s = parse_agent_settings("log_level: debug\ndisk: /dev/vda\n", "agent.yaml");
    REQUIRE(s);
    CHECK(s->log_level == "debug");
    CHECK(s->disk == "/dev/vda");
}

TEST_CASE("agent settings: every error names file:line:col", "[config][settings]") {
    auto s = parse_agent_settings("log_level: loud\n\nlog_levle: info\ndisk: vda\n",
                                  "/etc/ballast/agent.yaml");
    REQUIRE_FALSE(s);
    CHECK(s.error().code() == Errc::invalid_argument);
    const auto text = s.error().what();
    CHECK(text.find("/etc/ballast/agent.yaml:1:12: log_level: unknown log level 'loud'") !=
          std::string::npos);
    CHECK(text.find(
              "/etc/ballast/agent.yaml:3:1: unknown key 'log_levle' (did you mean 'log_level'?)") !=
          std::string::npos);
    CHECK(text.find("/etc/ballast/agent.yaml:4:7: disk: expected an absolute path") !=
          std::string::npos);
}

TEST_CASE("agent settings: YAML syntax errors have positions", "[config][settings]") {
    auto s = parse_agent_settings("log_level: [debug\n", "a.yaml");
    REQUIRE_FALSE(s);
    CHECK(s.error().code() == Errc::parse);
    CHECK(s.error().what().rfind("a.yaml:", 0) == 0);
    auto notmap = parse_agent_settings("- a\n- b\n", "a.yaml");
    REQUIRE_FALSE(notmap);
    CHECK(notmap.error().what() == "a.yaml:1:1: expected a mapping");
}

TEST_CASE("agent settings file: optional unless named", "[config][settings]") {
    test::TempDir t;
    CHECK(load_agent_settings(t / "none.yaml", false).value().log_level == "info");
    auto must = load_agent_settings(t / "none.yaml", true);
    REQUIRE_FALSE(must);
    CHECK(must.error().what().find("agent settings: ") == 0);
    test::write_text(t / "a.yaml", "log_level: error\n");
    CHECK(load_agent_settings(t / "a.yaml", true).value().log_level == "error");
}

TEST_CASE("map reader: types and lists", "[config][yaml]") {
    auto root =
        parse_yaml("n: 7\nbig: 70\nb: yes\nd: 1h\nl:\nnull_list:\nbad_list: x\nsub: {a: 1}\n", "f")
            .value();
    Diagnostics diags;
    MapReader r(root, "f", diags, "");
    uint32_t n = 0, big = 0;
    bool b = false;
    std::chrono::milliseconds d{};
    std::vector<std::string> l{"x"}, nl{"y"}, bad;
    r.read("n", n, 1, 10);
    r.read("big", big, 1, 10);
    r.read("b", b);
    r.read("d", d);
    r.read("l", l);
    r.read("null_list", nl);
    r.read("bad_list", bad);
    CHECK(n == 7);
    CHECK(big == 0);
    CHECK(b);
    CHECK(d == std::chrono::hours(1));
    CHECK(l.empty());  // "l:" with no items is an empty list
    CHECK(nl.empty());
    auto sub = r.sub("sub");
    std::string a;
    sub.read("a", a);
    CHECK(a == "1");
    REQUIRE(diags.error_count() == 2);
    CHECK(diags.items()[0].text() == "f:2:6: big: expected a whole number from 1 to 10");
    CHECK(diags.items()[1].text() == "f:7:11: bad_list: expected a list");
}
