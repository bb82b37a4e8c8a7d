#include <catch2/catch.hpp>

#include "ballast/config/agent_settings.hpp"
#include "ballast/config/reader.hpp"
#include "ballast/config/tree.hpp"
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
    CHECK(notmap.error().what() == "a.yaml:1:1: expected a mapping, found a list");
}

// An alias that contains itself overflowed the stack of the daemon at the next Reload.
TEST_CASE("agent settings: aliases that recurse or explode are errors", "[config][settings]") {
    auto cycle = parse_agent_settings("log_level: &a [*a]\n", "a.yaml");
    REQUIRE_FALSE(cycle);
    CHECK(cycle.error().what().find("nested more than 100 levels deep") != std::string::npos);
    // The limit's error is the one returned, not a later one from the same file.
    auto then_dup = parse_agent_settings("log_level: &a [*a]\nx: 1\nx: 2\n", "a.yaml");
    REQUIRE_FALSE(then_dup);
    CHECK(then_dup.error().what().rfind("a.yaml:1:", 0) == 0);
    CHECK(then_dup.error().what().find("nested more than 100") != std::string::npos);
    std::string bomb = "a: &a [x, x, x, x, x, x, x, x]\n";
    for (char c = 'b'; c <= 'k'; ++c)
        bomb += fmt::format("{}: &{} [*{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}]\n", c, c, char(c - 1),
                            char(c - 1), char(c - 1), char(c - 1), char(c - 1), char(c - 1),
                            char(c - 1), char(c - 1));
    auto exploded = parse_agent_settings(bomb, "a.yaml");
    REQUIRE_FALSE(exploded);
    CHECK(exploded.error().what().find("more than 200000 values once aliases are expanded") !=
          std::string::npos);
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

TEST_CASE("map reader: types and lists", "[config][reader]") {
    Diagnostics diags;
    auto root = parse_tree(
        "n: 7\nbig: 70\nb: yes\nd: 1h\nl:\nnull_list:\nbad_list: x\nsub: {a: 1}\n"
        "m: {k: v, e: }\n",
        "f", diags);
    REQUIRE(root);
    MapReader r(&*root, diags, "");
    uint32_t n = 0, big = 0;
    bool b = false;
    std::chrono::milliseconds d{};
    std::vector<std::string> l{"x"}, nl{"y"}, bad;
    std::map<std::string, std::string> m;
    r.read("n", n, 1, 10);
    r.read("big", big, 1, 10);
    r.read("b", b);
    r.read("d", d);
    r.read("l", l);
    r.read("null_list", nl);
    r.read("bad_list", bad);
    r.read("m", m);
    CHECK(n == 7);
    CHECK(big == 0);
    CHECK(b);
    CHECK(d == std::chrono::hours(1));
    CHECK(l.empty());  // "l:" with no items is an empty list
    CHECK(nl.empty());
    CHECK(m == std::map<std::string, std::string>{{"k", "v"}, {"e", ""}});
    auto sub = r.sub("sub");
    std::string a;
    sub.read("a", a);
    CHECK(a == "1");
    REQUIRE(diags.error_count() == 2);
    CHECK(diags.items()[0].text() == "f:2:6: big: expected a whole number from 1 to 10");
    CHECK(diags.items()[1].text() == "f:7:11: bad_list: expected a list, found a scalar");
}

TEST_CASE("tree: duplicate keys, quoting, positions", "[config][tree]") {
    Diagnostics diags;
    auto t = parse_tree("a: 1\nb: '2'\na: 3\nc:\n", "f.yaml", diags);
    REQUIRE(t);
    REQUIRE(diags.error_count() == 1);
    CHECK(diags.items()[0].text() == "f.yaml:3:1: duplicate key 'a'");
    CHECK(t->find("a")->scalar == "1");
    CHECK(t->find("a")->plain);
    CHECK_FALSE(t->find("b")->plain);
    CHECK(t->find("c")->is_null());
    CHECK(t->find("c")->pos.line == 4);
}

TEST_CASE("tree: merge deep-merges maps and appends lists", "[config][tree]") {
    Diagnostics diags;
    auto a = parse_tree("k3s: {enabled: true, args: [--a]}\nstages: {boot: [{name: one}]}\nx: 1\n",
                        "a.yaml", diags)
                 .value();
    auto b = parse_tree("k3s: {args: [--b]}\nstages: {boot: [{name: two}], fs: []}\nx: 2\ny:\n",
                        "b.yaml", diags)
                 .value();
    merge_tree(a, b);
    CHECK(a.find("k3s")->find("enabled")->scalar == "true");
    REQUIRE(a.find("k3s")->find("args")->items.size() == 2);
    CHECK(a.find("k3s")->find("args")->items[1].pos.file == "b.yaml");
    const auto& boot = a.find("stages")->find("boot")->items;
    REQUIRE(boot.size() == 2);
    CHECK(boot[0].find("name")->scalar == "one");
    CHECK(boot[1].find("name")->scalar == "two");
    CHECK(a.find("x")->scalar == "2");
    CHECK(a.find("x")->pos.file == "b.yaml");
    CHECK(a.find("stages")->find("fs"));
}

TEST_CASE("file modes: octal as users mean it", "[config][reader]") {
    Diagnostics diags;
    auto t =
        parse_tree("a: 0644\nb: '0600'\nc: 420\nd: 0o755\ne: 0999\nf: 644\ng: 99999\n", "f", diags)
            .value();
    MapReader r(&t, diags, "");
    std::optional<uint32_t> a, b, c, d, e, f, g;
    r.read_mode("a", a);
    r.read_mode("b", b);
    r.read_mode("c", c);
    r.read_mode("d", d);
    r.read_mode("e", e);
    r.read_mode("f", f);
    r.read_mode("g", g);
    CHECK(a == 0644u);
    CHECK(b == 0600u);
    CHECK(c == 0644u);  // YAML 1.1 decimal 420
    CHECK(d == 0755u);
    CHECK_FALSE(e);
    CHECK(f == 644u);
    CHECK_FALSE(g);
    REQUIRE(diags.items().size() == 3);
    CHECK(diags.items()[0].text() == "f:5:4: e: expected a file mode such as 0644");
    CHECK(diags.items()[1].text() ==
          "f:6:4: warning: f: 644 is decimal (mode 1204); write 0644 for octal");
    CHECK(diags.items()[2].text() == "f:7:4: g: expected a file mode such as 0644");
}

TEST_CASE("agent settings: update and health", "[config][settings][agent_settings]") {
    auto d = parse_agent_settings("", "agent.yaml").value();
    CHECK(d.update.compatible.empty());
    CHECK(d.update.keyring.empty());
    CHECK(d.update.tries == 3);
    CHECK(d.health.units.empty());
    CHECK(d.health.commands.empty());
    CHECK(d.health.deadline == std::chrono::minutes(5));
    CHECK(d.health.interval == std::chrono::seconds(5));

    auto s = parse_agent_settings(
        "update:\n"
        "  compatible: acme-edge-x86_64\n"
        "  keyring: /etc/ballast/keys.pem\n"
        "  tries: 9\n"
        "health:\n"
        "  units: [k3s.service, containerd.service]\n"
        "  commands:\n"
        "    - curl -fsS http://localhost:6443/readyz\n"
        "    - 'test -e /run/ready'\n"
        "  deadline: 10m\n"
        "  interval: 500ms\n",
        "agent.yaml");
    REQUIRE(s);
    CHECK(s->update.compatible == "acme-edge-x86_64");
    CHECK(s->update.keyring == "/etc/ballast/keys.pem");
    CHECK(s->update.tries == 9);
    CHECK(s->health.units == std::vector<std::string>{"k3s.service", "containerd.service"});
    CHECK(s->health.commands ==
          std::vector<std::string>{"curl -fsS http://localhost:6443/readyz", "test -e /run/ready"});
    CHECK(s->health.deadline == std::chrono::minutes(10));
    CHECK(s->health.interval == std::chrono::milliseconds(500));

    // The bounds themselves, other spellings, empty sections.
    auto b = parse_agent_settings(
        "update: {tries: 1}\nhealth: {deadline: 1s, interval: 100ms, units:, commands: []}\n",
        "agent.yaml");
    REQUIRE(b);
    CHECK(b->update.tries == 1);
    CHECK(b->health.deadline == std::chrono::seconds(1));
    CHECK(b->health.interval == std::chrono::milliseconds(100));
    CHECK(b->health.units.empty());
    CHECK(parse_agent_settings("update:\nhealth:\n", "agent.yaml"));
    CHECK(parse_agent_settings("health: {deadline: 1h30m, interval: 90}\n", "agent.yaml")
              .value()
              .health.interval == std::chrono::seconds(90));
}

TEST_CASE("agent settings: update and health errors name file:line:col",
          "[config][settings][agent_settings]") {
    auto errors = [](const std::string& text) {
        auto s = parse_agent_settings(text, "/etc/ballast/agent.yaml");
        REQUIRE_FALSE(s);
        CHECK(s.error().code() == Errc::invalid_argument);
        return s.error().what();
    };
    auto has = [](const std::string& text, const std::string& line) {
        INFO(text);
        CHECK(text.find(line) != std::string::npos);
    };
    const std::string f = "/etc/ballast/agent.yaml:";

    for (const char* tries : {"0", "10", "-1", "3.5", "three", "[3]"}) {
        INFO(tries);
        has(errors(std::string("update:\n  tries: ") + tries + "\n"),
            f + "2:10: update.tries: expected a whole number from 1 to 9");
    }
    has(errors("update:\n  keyring: keys.pem\n"),
        f + "2:12: update.keyring: expected an absolute path");
    has(errors("update:\n  keyring: ''\n"), f + "2:12: update.keyring: expected an absolute path");
    has(errors("update:\n  compatible: [a, b]\n"),
        f + "2:15: update.compatible: expected a string, found a list");
    has(errors("update:\n  try: 3\n"), f + "2:3: unknown key 'update.try'");
    has(errors("update: 3\n"), f + "1:9: update: expected a mapping, found a scalar");

    has(errors("health:\n  deadline: 5 minutes\n"),
        f + "2:13: health.deadline: invalid duration '5 minutes'");
    has(errors("health:\n  deadline: 500ms\n"), f + "2:13: health.deadline: must be at least 1s");
    has(errors("health:\n  interval: 10ms\n"), f + "2:13: health.interval: must be at least 100ms");
    has(errors("health:\n  interval: [1s]\n"),
        f + "2:13: health.interval: expected a duration such as 90s, 5m or 1h30m");
    has(errors("health:\n  units: k3s.service\n"),
        f + "2:10: health.units: expected a list, found a scalar");
    has(errors("health:\n  commands:\n    - {run: true}\n"),
        f + "3:7: health.commands: list items must be strings, found a mapping");
    has(errors("health:\n  unit: [k3s.service]\n"),
        f + "2:3: unknown key 'health.unit' (did you mean 'units'?)");

    // Every problem at once, each with its own line.
    const auto all = errors(
        "update:\n  tries: 12\n  keyring: relative\nhealth:\n  deadline: 0\n  interval: 1ms\n");
    has(all, f + "2:10: update.tries: expected a whole number from 1 to 9");
    has(all, f + "3:12: update.keyring: expected an absolute path");
    has(all, f + "5:13: health.deadline: must be at least 1s");
    has(all, f + "6:13: health.interval: must be at least 100ms");
}

TEST_CASE("agent settings: tpm", "[config][settings][agent_settings]") {
    auto d = parse_agent_settings("", "a.yaml");
    REQUIRE(d);
    CHECK(d->tpm.device.empty());
    CHECK(d->tpm.pcrs == "7");
    CHECK(d->tpm.pcr_bank == "sha256");
    auto s = parse_agent_settings(
        "tpm:\n  device: swtpm:host=127.0.0.1,port=2321\n  pcrs: '7,14'\n  pcr_bank: sha384\n"
        "  recovery_key_command: cat > /dev/null\n",
        "a.yaml");
    REQUIRE(s);
    CHECK(s->tpm.device == "swtpm:host=127.0.0.1,port=2321");
    CHECK(s->tpm.pcrs == "7,14");
    CHECK(s->tpm.pcr_bank == "sha384");
    CHECK(s->tpm.recovery_key_command == "cat > /dev/null");

    auto error = [](const std::string& text) {
        auto r = parse_agent_settings(text, "a.yaml");
        REQUIRE_FALSE(r);
        return r.error().what();
    };
    CHECK_THAT(error("tpm:\n  pcrs: '7,24'\n"),
               Catch::Contains("a.yaml:2:9: tpm.pcrs: ") && Catch::Contains("'24' is not a PCR"));
    CHECK_THAT(error("tpm:\n  pcr_bank: md5\n"), Catch::Contains("a.yaml:2:13: tpm.pcr_bank: "));
    CHECK_THAT(error("tpm:\n  device: /dev/tpmrm0\n"),
               Catch::Contains("a.yaml:2:11: tpm.device: expected a TCTI"));
    CHECK_THAT(error("tpm:\n  pcr: 7\n"), Catch::Contains("unknown key 'tpm.pcr'"));
}
