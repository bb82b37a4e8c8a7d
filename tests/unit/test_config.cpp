// Cloud-config loading: examples, headers, merge, templates, cloud-init and k3OS mapping.
#include <catch2/catch.hpp>

#include <filesystem>

#include "ballast/config/loader.hpp"
#include "ballast/config/sources.hpp"
#include "ballast/config/stage_names.hpp"
#include "ballast/config/template.hpp"
#include "ballast/stages/plan.hpp"
#include "ballast/stages/runner.hpp"
#include "helpers.hpp"

using namespace ballast;
using namespace ballast::config;
using nlohmann::json;

namespace {

const json kFacts = {
    {"MachineID", "0123456789abcdef0123456789abcdef"},
    {"Hostname", "node0"},
    {"UUID", "4c4c4544-0042-3510-8052-b4c04f4e4232"},
    {"Random", "r4nd0m"},
    {"Values",
     {{"node", {{"hostname", "node0"}}},
      {"os", {{"name", "debian"}}},
      {"network", json::array({{{"name", "eth0"}, {"macaddress", "52:54:00:12:34:56"}}})}}},
};

Loaded load(std::vector<std::pair<std::string, std::string>> files) {
    std::vector<SourceFile> srcs;
    for (auto& [name, text] : files)
        srcs.push_back({name, text, detect_kind(text, name)});
    return load_sources(std::move(srcs), kFacts);
}

std::string all_diags(const Diagnostics& d) {
    std::string out;
    for (const auto& i : d.items())
        out += i.text() + "\n";
    return out;
}

bool has_diag(const Diagnostics& d, const std::string& text) {
    for (const auto& i : d.items())
        if (i.text().find(text) != std::string::npos) return true;
    return false;
}

std::vector<std::string> texts(const std::vector<CommandSpec>& cmds) {
    std::vector<std::string> out;
    for (const auto& c : cmds)
        out.push_back(c.text);
    return out;
}

const Step& step_named(const Config& c, const std::string& stage, const std::string& name) {
    for (const auto& s : c.stages.at(stage))
        if (s.name == name) return s;
    FAIL("no step " + name + " in " + stage);
    throw;
}

}  // namespace

TEST_CASE("every shared example loads without errors", "[config][examples]") {
    const std::filesystem::path dir = std::filesystem::path(BALLAST_TEST_DATA) / "examples";
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
        if (e.path().extension() != ".yaml") continue;
        ++n;
        auto l = load({{e.path().filename().string(), test::read_text(e.path())}});
        INFO(e.path().filename().string() << "\n" << all_diags(l.diags));
        CHECK_FALSE(l.diags.has_errors());
        // Nothing unknown either: the examples are what users write.
        CHECK(l.diags.items().empty());
    }
    CHECK(n == 6);
}

TEST_CASE("examples map to the stages the original systems use", "[config][examples]") {
    const std::filesystem::path dir = std::filesystem::path(BALLAST_TEST_DATA) / "examples";
    auto single = load({{"single-server.yaml", test::read_text(dir / "single-server.yaml")}});
    const auto& c = single.config;
    CHECK(step_named(c, "initramfs", "hostname").hostname == "edge-012345");
    const auto& users = step_named(c, "boot", "users").users;
    REQUIRE(users.size() == 1);
    CHECK(users[0].name == "ops");
    CHECK(users[0].groups == std::vector<std::string>{"sudo"});
    CHECK(users[0].lock_passwd);
    CHECK(users[0].ssh_authorized_keys.size() == 1);
    const auto& files = step_named(c, "boot", "write_files").files;
    REQUIRE(files.size() == 1);
    CHECK(files[0].mode == 0644u);
    CHECK(c.k3s.enabled);
    CHECK(c.k3s.args ==
          std::vector<std::string>{"--disable=traefik", "--write-kubeconfig-mode=0640"});

    auto stages = load({{"stages.yaml", test::read_text(dir / "stages.yaml")}});
    const auto& site = step_named(stages.config, "boot", "Site configuration");
    CHECK(site.if_cmd == "[ ! -e /etc/site.conf ]");
    REQUIRE(site.files.size() == 1);
    CHECK(site.files[0].mode == 0600u);
    CHECK(site.files[0].owner.id == 0u);
    CHECK(site.id == "stages.yaml.Site configuration");
    CHECK(step_named(stages.config, "boot", "Services").systemctl.mask.size() == 2);
    CHECK(step_named(stages.config, "network", "Name servers").dns.nameservers.size() == 2);
    CHECK(step_named(stages.config, "reconcile", "Keep the banner").files[0].content ==
          "Ballast node \\n\n");
}

TEST_CASE("k3OS files map to initrd, boot and run phases", "[config][k3os]") {
    const std::filesystem::path dir = std::filesystem::path(BALLAST_TEST_DATA) / "examples";
    auto l =
        load({{"/var/lib/rancher/k3os/config.yaml", test::read_text(dir / "k3os-config.yaml")}});
    INFO(all_diags(l.diags));
    REQUIRE_FALSE(l.diags.has_errors());
    const auto& c = l.config;
    const auto& init = step_named(c, "initramfs", "k3os-initrd");
    CHECK(init.modules == std::vector<std::string>{"br_netfilter"});
    CHECK(init.sysctl.at("kernel.panic") == "10");
    CHECK(init.hostname == "k3os-node-1");
    CHECK(init.files.size() == 1);
    CHECK(init.environment.at("HTTPS_PROXY") == "http://proxy.example:3128");
    const auto& boot = step_named(c, "boot", "k3os-boot");
    CHECK(boot.dns.nameservers == std::vector<std::string>{"1.1.1.1"});
    CHECK(boot.timesyncd.at("NTP") == "0.pool.ntp.org");
    REQUIRE(boot.users.size() == 1);
    CHECK(boot.users[0].name == "rancher");
    CHECK(boot.users[0].passwd == "changeme");
    CHECK(boot.users[0].ssh_authorized_keys.size() == 1);
    CHECK(texts(boot.commands) == std::vector<std::string>{"echo boot > /run/boot-cmd-ran"});
    CHECK(texts(step_named(c, "network", "k3os-run").commands) ==
          std::vector<std::string>{"echo run > /run/run-cmd-ran"});
    CHECK(c.k3os.server_url == "https://k3s.example:6443");
    CHECK(c.k3os.labels.at("zone") == "a");
    CHECK(c.k3os.k3s_args == std::vector<std::string>{"agent"});
}

TEST_CASE("headers: accepted, k3OS, missing", "[config][sources]") {
    CHECK(detect_kind("#cloud-config\na: 1\n", "/oem/a.yaml") == SourceKind::cloud_config);
    CHECK(detect_kind("\n# comment\n#kairos-config\n", "/oem/a.yaml") == SourceKind::cloud_config);
    CHECK(detect_kind("#node-config  \n", "x") == SourceKind::cloud_config);
    CHECK(detect_kind("hostname: x\n", "/k3os/system/config.yaml") == SourceKind::k3os);
    CHECK(detect_kind("hostname: x\nk3os:\n  token: y\n", "/oem/x.yaml") == SourceKind::k3os);
    CHECK(detect_kind("hostname: x\n", "/oem/x.yaml") == SourceKind::no_header);
    CHECK(detect_kind("hostname: x\n#cloud-config\n", "/oem/x.yaml") == SourceKind::no_header);
}

TEST_CASE("files without a header are skipped with a warning", "[config][sources]") {
    test::TempDir t;
    std::filesystem::create_directories(t / "oem");
    test::write_text(t / "oem/10-good.yaml", "#cloud-config\nhostname: good\n");
    test::write_text(t / "oem/20-nohdr.yaml", "hostname: ignored\n");
    test::write_text(t / "oem/30-notyaml.txt", "#cloud-config\nhostname: notyaml\n");
    auto l = load_config(RootPrefix(t.path()), {}, kFacts);
    REQUIRE(l);
    CHECK(has_diag(l->diags,
                   "/oem/20-nohdr.yaml:1:1: warning: no #cloud-config header: file ignored"));
    REQUIRE(l->config.stages.count("initramfs"));
    REQUIRE(l->config.stages.at("initramfs").size() == 1);
    CHECK(l->config.stages.at("initramfs")[0].hostname == "good");
}

TEST_CASE("files merge: maps deep-merge, step lists append in file order", "[config][merge]") {
    auto l = load({
        {"/oem/10.yaml",
         "#cloud-config\nk3s: {enabled: true, args: [--a]}\nstages:\n  boot:\n    - name: one\n    "
         "  commands: [echo 1]\n"},
        {"/oem/20.yaml",
         "#cloud-config\nk3s: {args: [--b], env: {K: v}}\nstages:\n  boot:\n    - name: two\n      "
         "commands: [echo 2]\n"},
    });
    REQUIRE_FALSE(l.diags.has_errors());
    const auto& boot = l.config.stages.at("boot");
    REQUIRE(boot.size() == 2);
    CHECK(boot[0].id == "/oem/10.yaml.one");
    CHECK(boot[1].id == "/oem/20.yaml.two");
    CHECK(l.config.k3s.enabled);
    CHECK(l.config.k3s.args == std::vector<std::string>{"--a", "--b"});
    CHECK(l.config.k3s.env.at("K") == "v");
    auto shown = tree_to_json(l.merged, true);
    CHECK(shown["k3s"]["env"]["K"]["source"] == "/oem/20.yaml:2:29");
    CHECK(shown["k3s"]["enabled"]["source"] == "/oem/10.yaml:2:16");
}

TEST_CASE("templates: every function of the table", "[config][template]") {
    Position p{"f.yaml", 3, 1};
    auto r = [&](const char* t) { return render_template(t, kFacts, p).value(); };
    CHECK(r("{{ upper \"aB\" }}|{{ lower \"aB\" }}|{{ title \"ab cd\" }}") == "AB|ab|Ab Cd");
    CHECK(r("[{{ trim \"  x \" }}]{{ squote \"a\" }}{{ quote \"a\\\"b\" }}") == "[x]'a'\"a\\\"b\"");
    CHECK(r("{{ b64enc \"hi\" }} {{ b64dec \"aGk=\" }} {{ toString 12 }}") == "aGk= hi 12");
    CHECK(r("{{ trimPrefix \"ab\" \"abc\" }} {{ trimSuffix \"bc\" \"abc\" }}") == "c a");
    CHECK(r("{{ contains \"b\" \"abc\" }} {{ hasPrefix \"b\" \"abc\" }} {{ hasSuffix \"c\" \"abc\" "
            "}}") == "true false true");
    CHECK(r("{{ replace \"\" \"x\" \"ab\" }}") == "ab");
    CHECK(render_template("{{ b64dec \"!\" }}", kFacts, p)
              .error()
              .what()
              .starts_with("f.yaml:3: template: b64dec: "));
    CHECK(render_template("{{ join \",\" \"a\" }}", kFacts, p).error().what() ==
          "f.yaml:3: template: join: the second argument must be a list");
    CHECK(render_template("{{ index .Hostname }}", kFacts, p).error().what() ==
          "f.yaml:3: template: index: expects a collection and at least one key");
    CHECK(render_template("{{ upper \"a\" \"b\" }}", kFacts, p).error().what() ==
          "f.yaml:3: template: upper: expects 1 argument, got 2");
    // A missing field is named before the function is looked up, as before the table.
    CHECK(render_template("{{ nope .Values.x }}", kFacts, p).error().what() ==
          "f.yaml:3: template: no field .Values.x in the node facts");
}

TEST_CASE("templates: node facts, functions, errors with positions", "[config][template]") {
    Position p{"f.yaml", 3, 1};
    CHECK(render_template("metal-{{ trunc 4 .MachineID }}", kFacts, p).value() == "metal-0123");
    CHECK(render_template("{{ .MachineID | trunc 4 | upper }}", kFacts, p).value() == "0123");
    CHECK(render_template("{{ trunc -4 .MachineID }}", kFacts, p).value() == "cdef");
    CHECK(render_template("{{ default \"none\" .Values.node.missing }}", kFacts, p).value() ==
          "none");
    CHECK(render_template("{{ default \"x\" .Hostname }}", kFacts, p).value() == "node0");
    CHECK(render_template("{{ replace \"-\" \"_\" .UUID | trunc 8 }}", kFacts, p).value() ==
          "4c4c4544");
    CHECK(render_template("{{ quote .Hostname }} {{ lower \"AB\" }}", kFacts, p).value() ==
          "\"node0\" ab");
    CHECK(render_template("{{ (index .Values.network 0).macaddress }}", kFacts, p).value() ==
          "52:54:00:12:34:56");
    CHECK(render_template("{{ eq 1 1 }}", kFacts, p).error().what() ==
          "f.yaml:3: template: unknown function 'eq'");
    CHECK(render_template("a {{- \" b \" -}} c", kFacts, p).value() == "a b c");
    CHECK(render_template("{{ if .Values.node.hostname }}yes{{ else }}no{{ end }}", kFacts, p)
              .value() == "yes");
    CHECK(render_template("{{ if .Random }}{{ if false }}a{{ else if true }}b{{ end }}{{ end }}",
                          kFacts, p)
              .value() == "b");
    CHECK(render_template("{{/* note */}}x", kFacts, p).value() == "x");
    CHECK(render_template("{{ \"{{\" }}", kFacts, p).value() == "{{");

    auto unknown_fn = render_template("line1\nline2 {{ truncate 4 .MachineID }}", kFacts, p);
    REQUIRE_FALSE(unknown_fn);
    CHECK(unknown_fn.error().what() == "f.yaml:4: template: unknown function 'truncate'");
    auto unknown_field = render_template("{{ .MachineId }}", kFacts, p);
    CHECK(unknown_field.error().what() ==
          "f.yaml:3: template: no field .MachineId in the node facts");
    CHECK(render_template("{{ trunc 4 }}", kFacts, p).error().what() ==
          "f.yaml:3: template: trunc: expects 2 arguments, got 1");
    CHECK_FALSE(render_template("{{ .Hostname ", kFacts, p));
    CHECK_FALSE(render_template("{{ if .Hostname }}x", kFacts, p));
    CHECK_FALSE(render_template("{{ end }}", kFacts, p));
    CHECK_FALSE(render_template("{{ range .Values }}{{ end }}", kFacts, p));
    // Bounded nesting: deep input is an error, not a stack overflow.
    std::string deep =
        "{{ " + std::string(100000, '(') + ".Hostname" + std::string(100000, ')') + " }}";
    CHECK(render_template(deep, kFacts, p).error().what().find("nested too deeply") !=
          std::string::npos);
    std::string deep_if;
    for (int i = 0; i < 1000; ++i)
        deep_if += "{{ if true }}";
    CHECK_FALSE(render_template(deep_if, kFacts, p));
}

TEST_CASE("template errors in a file name its line", "[config][template]") {
    auto l = load({{"/oem/t.yaml",
                    "#cloud-config\nstages:\n  boot:\n    - commands:\n        - echo {{ nope "
                    ".MachineID }}\n"}});
    INFO(all_diags(l.diags));
    CHECK(has_diag(l.diags, "/oem/t.yaml:5:11: template: unknown function 'nope'"));
}

// Found by the fuzzer: std::stoll threw on a long number and took the agent down.
TEST_CASE("numbers out of range are errors, never exceptions", "[config][template][validate]") {
    Position p{"/oem/n.yaml", 3, 0};
    auto big = render_template("{{ trunc 99999999999999999999 .MachineID }}", kFacts, p);
    REQUIRE_FALSE(big);
    CHECK(big.error().what() ==
          "/oem/n.yaml:3: template: number 99999999999999999999 is out of range");
    CHECK(render_template("{{ trunc -9223372036854775808 .MachineID }}", kFacts, p).value() ==
          "0123456789abcdef0123456789abcdef");

    auto l = load({{"/oem/n.yaml",
                    "#cloud-config\n"
                    "hostname: x{{ trunc 123456789012345678901234567890 .MachineID }}\n"
                    "users:\n"
                    "  - name: a\n"
                    "    uid: 99999999999999999999\n"
                    "  - name: b\n"
                    "    uid: 4294967295\n"
                    "write_files:\n"
                    "  - path: /etc/a\n"
                    "    owner: 4294967296:0\n"
                    "    permissions: 077777777777777777777777\n"}});
    INFO(all_diags(l.diags));
    CHECK(has_diag(l.diags,
                   "/oem/n.yaml:2:11: template: number 123456789012345678901234567890 is "
                   "out of range"));
    CHECK(has_diag(l.diags,
                   "/oem/n.yaml:5:10: users[0].uid: '99999999999999999999' is not a "
                   "user id (0-4294967294)"));
    CHECK(has_diag(l.diags, "/oem/n.yaml:7:10: users[1].uid: '4294967295' is not a user id"));
    CHECK(has_diag(l.diags,
                   "/oem/n.yaml:10:12: write_files[0].owner: id 4294967296 is out of range"));
    CHECK(has_diag(l.diags, "write_files[0].permissions: expected a file mode"));
}

TEST_CASE("an alias that contains itself is an error at its line", "[config][validate]") {
    auto l = load({{"/oem/a.yaml", "#cloud-config\nhostname: x\nstages:\n  boot: &s [*s]\n"}});
    INFO(all_diags(l.diags));
    CHECK(has_diag(l.diags, "/oem/a.yaml:4:"));
    CHECK(has_diag(l.diags, "nested more than 100 levels deep (an alias that contains itself?)"));
    CHECK(l.config.stages.empty());
}

TEST_CASE("validation: types, unknown keys, did-you-mean, positions", "[config][validate]") {
    auto l = load({{"/oem/v.yaml",
                    "#cloud-config\n"
                    "stages:\n"
                    "  boot:\n"
                    "    - name: sysctl typo\n"
                    "      systctl:\n"
                    "        vm.x: 1\n"
                    "    - files:\n"
                    "        - path: relative/path\n"
                    "          permissions: 0999\n"
                    "          content: x\n"
                    "          encoding: b64\n"
                    "      users: 5\n"
                    "hostnme: x\n"
                    "k3s:\n"
                    "  enabled: maybe\n"}});
    INFO(all_diags(l.diags));
    CHECK(has_diag(
        l.diags,
        "/oem/v.yaml:5:7: warning: unknown key 'stages.boot[0].systctl' (did you mean 'sysctl'?)"));
    CHECK(has_diag(
        l.diags,
        "/oem/v.yaml:8:17: stages.boot[1].files[0].path: 'relative/path' is not an absolute path"));
    CHECK(has_diag(l.diags,
                   "/oem/v.yaml:9:24: stages.boot[1].files[0].permissions: expected a file mode "
                   "such as 0644"));
    CHECK(has_diag(l.diags, "/oem/v.yaml:11:21: stages.boot[1].files[0].encoding: invalid base64"));
    CHECK(has_diag(
        l.diags, "/oem/v.yaml:12:14: stages.boot[1].users: expected a list or a mapping of users"));
    CHECK(has_diag(l.diags,
                   "/oem/v.yaml:13:1: warning: unknown key 'hostnme' (did you mean 'hostname'?)"));
    CHECK(has_diag(l.diags, "/oem/v.yaml:15:12: k3s.enabled: expected true or false"));
    CHECK(l.diags.error_count() == 5);
}

TEST_CASE("YAML syntax errors name the position", "[config][validate]") {
    auto l = load({{"/oem/bad.yaml", "#cloud-config\nstages:\n  boot: [\n"}});
    REQUIRE(l.diags.has_errors());
    INFO(all_diags(l.diags));
    CHECK(l.diags.items()[0].text().rfind("/oem/bad.yaml:4:1: ", 0) == 0);
}

TEST_CASE("null lists are empty lists; octal modes in write_files", "[config][validate]") {
    auto l = load({{"/oem/n.yaml",
                    "#cloud-config\n"
                    "ssh_authorized_keys:\n"
                    "#  - ssh-ed25519 AAAA commented out\n"
                    "write_files:\n"
                    "  - path: /etc/a\n"
                    "    permissions: 0600\n"
                    "  - path: /etc/b\n"
                    "    permissions: '0640'\n"
                    "  - path: /etc/c\n"}});
    INFO(all_diags(l.diags));
    CHECK_FALSE(l.diags.has_errors());
    const auto& files = step_named(l.config, "boot", "write_files").files;
    REQUIRE(files.size() == 3);
    CHECK(files[0].mode == 0600u);
    CHECK(files[1].mode == 0640u);
    CHECK(files[2].mode == 0644u);
    CHECK(files[2].content.empty());
}

TEST_CASE("cloud-init keys map to stages as yip does", "[config][cloud-init]") {
    auto l = load({{"/oem/c.yaml",
                    "#cloud-config\n"
                    "hostname: h-{{ trunc 2 .MachineID }}\n"
                    "ssh_authorized_keys: [ssh-ed25519 AAAA global, github:someone]\n"
                    "users:\n"
                    "  - name: a\n"
                    "    ssh_authorized_keys: [ssh-rsa BBBB own, gitlab:other]\n"
                    "  - default\n"
                    "runcmd:\n"
                    "  - echo one\n"
                    "  - [touch, \"/tmp/it's\"]\n"
                    "bootcmd: [echo early]\n"
                    "write_files:\n"
                    "  - path: /etc/x\n"
                    "    content: aGVsbG8=\n"
                    "    encoding: b64\n"
                    "    owner: nobody:nogroup\n"
                    "    append: true\n"}});
    INFO(all_diags(l.diags));
    REQUIRE_FALSE(l.diags.has_errors());
    const auto& c = l.config;
    CHECK(step_named(c, "initramfs", "hostname").hostname == "h-01");
    const auto& user = step_named(c, "boot", "users").users.at(0);
    CHECK(user.ssh_authorized_keys ==
          std::vector<std::string>{"ssh-rsa BBBB own", "ssh-ed25519 AAAA global"});
    CHECK(step_named(c, "network", "ssh_authorized_keys").authorized_keys.at("a") ==
          std::vector<std::string>{"gitlab:other", "github:someone"});
    CHECK(texts(step_named(c, "boot", "runcmd").commands) ==
          std::vector<std::string>{"echo one", "'touch' '/tmp/it'\\''s'"});
    CHECK(texts(step_named(c, "boot.before", "bootcmd").commands) ==
          std::vector<std::string>{"echo early"});
    const auto& f = step_named(c, "boot", "write_files").files.at(0);
    CHECK(f.content == "hello");
    CHECK(f.owner.name == "nobody");
    CHECK(f.group.name == "nogroup");
    CHECK(f.append);
    // boot order: files, users, commands (as cloud-init runs write_files before users, runcmd last)
    const auto& boot = c.stages.at("boot");
    REQUIRE(boot.size() == 3);
    CHECK(boot[0].name == "write_files");
    CHECK(boot[2].name == "runcmd");
}

TEST_CASE("after: names must exist", "[config][validate]") {
    auto l = load({{"/oem/a.yaml",
                    "#cloud-config\nstages:\n  boot:\n    - name: b\n      after: [{name: nope}]\n "
                    "   - name: c\n      after: [{name: b}]\n"}});
    CHECK(l.diags.error_count() == 1);
    CHECK(has_diag(l.diags, "after 'nope': no such step in stage boot"));
}

TEST_CASE("kernel command line ballast.* keys become config", "[config][sources]") {
    auto docs = cmdline_config(
        "quiet ballast.slot=a ballast.k3s.enabled=true ballast.hostname=it's root=/dev/x");
    REQUIRE(docs.size() == 2);
    std::vector<SourceFile> srcs;
    for (auto& d : docs)
        srcs.push_back({"kernel command line", d, SourceKind::cloud_config});
    auto l = load_sources(std::move(srcs), kFacts);
    INFO(all_diags(l.diags));
    CHECK(l.config.k3s.enabled);
    CHECK(step_named(l.config, "initramfs", "hostname").hostname == "it's");
}

TEST_CASE("unsupported modules are errors, not silent", "[config][validate]") {
    auto l = load({{"/oem/u.yaml",
                    "#cloud-config\nstages:\n  boot:\n    - packages: {install: [vim]}\n      git: "
                    "{url: x}\n"}});
    CHECK(l.diags.error_count() == 2);
    CHECK(has_diag(l.diags, "packages: not supported by Ballast"));
}

TEST_CASE("reset: Kairos' keys, their defaults and contradictions", "[config][reset]") {
    auto l = load({{"/oem/a.yaml", "#cloud-config\nhostname: n\n"}});
    CHECK(l.config.reset.persistent);
    CHECK_FALSE(l.config.reset.oem);
    CHECK_FALSE(l.config.reset.poweroff);
    CHECK_FALSE(l.config.reset.reboot);
    l = load({{"/oem/r.yaml",
               "#cloud-config\nreset:\n  reset-persistent: true\n  reset-oem: true\n  "
               "reboot: false\n  poweroff: true\n  grub-entry-name: Kairos\n"}});
    CHECK(l.diags.items().empty());
    CHECK(l.config.reset.oem);
    CHECK(l.config.reset.poweroff);
    CHECK(l.config.reset.reboot == false);
    CHECK(l.config.reset.pos.file == "/oem/r.yaml");
    // Merged over files, as install: is: a later file changes one key.
    l = load({{"/oem/10.yaml", "#cloud-config\nreset:\n  reset-oem: true\n"},
              {"/oem/20.yaml", "#cloud-config\nreset:\n  reset-persistent: false\n"}});
    CHECK(l.diags.error_count() == 0);
    CHECK(l.config.reset.oem);
    CHECK_FALSE(l.config.reset.persistent);
    // A reset that wipes nothing: an error at the block.
    l = load({{"/oem/r.yaml", "#cloud-config\nreset:\n  reset-persistent: false\n"}});
    CHECK(has_diag(l.diags, "/oem/r.yaml:3"));
    CHECK(has_diag(l.diags, "reset-persistent and reset-oem are both false"));
    CHECK(l.diags.error_count() == 1);
    // reboot (now) and poweroff (when done) both: no conflict in Ballast.
    l = load({{"/oem/r.yaml", "#cloud-config\nreset:\n  reboot: true\n  poweroff: true\n"}});
    CHECK(l.diags.items().empty());
    CHECK(l.config.reset.poweroff);
    // Kairos' source: Ballast resets to what it runs (a warning; the rest applies).
    l = load({{"/oem/r.yaml",
               "#cloud-config\nreset:\n  source: oci:quay.io/kairos/os\n  reset-oem: true\n"}});
    CHECK(l.diags.error_count() == 0);
    CHECK(has_diag(l.diags, "warning: reset.source"));
    CHECK(l.config.reset.oem);
    l = load({{"/oem/r.yaml", "#cloud-config\nreset:\n  reset-oem: sometimes\n"}});
    CHECK(l.diags.error_count() == 1);
    CHECK(has_diag(l.diags, "/oem/r.yaml:3"));
}

TEST_CASE("access_steps: a recovery boot's way in, and nothing else of the config",
          "[config][recovery]") {
    auto l = load({{"/oem/a.yaml", R"(#cloud-config
hostname: edge-7
users:
  - name: ops
    ssh_authorized_keys: ["ssh-ed25519 AAAA ops"]
runcmd: ["touch /x"]
write_files:
  - path: /etc/y
    content: y
stages:
  network:
    - name: keys
      authorized_keys:
        root: ["ssh-ed25519 AAAA root"]
      commands: ["echo no"]
    - name: later
      after: [{name: keys}]
      users:
        svc: {}
      commands: ["echo no"]
  reconcile:
    - users:
        never: {}
)"}});
    REQUIRE(l.diags.error_count() == 0);
    auto a = stages::access_steps(l.config, "recovery");
    REQUIRE(a.stages.size() == 1);
    const auto& steps = a.stages.at("recovery");
    std::vector<std::string> what;
    for (const auto& s : steps) {
        CHECK(s.stage == "recovery");
        CHECK(s.commands.empty());
        CHECK(s.files.empty());
        CHECK(s.after.empty());
        what.push_back(!s.hostname.empty() ? "hostname " + s.hostname
                       : !s.users.empty()  ? "users " + s.users.front().name
                                           : "keys " + s.authorized_keys.begin()->first);
    }
    // Boot order (initramfs, boot, network); a reconcile step is not part of a boot.
    CHECK(what ==
          std::vector<std::string>{"hostname edge-7", "users ops", "keys root", "users svc"});
}

TEST_CASE("load_for_block: an error in a file holding the block stops its reader",
          "[config][reset]") {
    auto srcs = [](std::string other) {
        return std::vector<SourceFile>{
            {"/oem/r.yaml", "#cloud-config\nreset:\n  reset-oem: true\n", SourceKind::cloud_config},
            {"/oem/x.yaml", std::move(other), SourceKind::cloud_config}};
    };
    // An error elsewhere is left to the caller; the block still loads.
    auto l = load_for_block(srcs("#cloud-config\nhostname: [a\n"), "reset", kFacts);
    REQUIRE(l);
    CHECK(l->diags.has_errors());
    CHECK(l->config.reset.oem);
    // In a file that holds the block: its settings must not fall back to defaults.
    auto bad =
        load_for_block(srcs("#cloud-config\nreset:\n  reset-persistent: maybe\n"), "reset", kFacts);
    REQUIRE_FALSE(bad);
    CHECK(bad.error().what().find("/oem/x.yaml:3") != std::string::npos);
    // A stage named after-reset is not the block.
    l = load_for_block(srcs("#cloud-config\nstages:\n  after-reset:\n    - hostname: [a\n"),
                       "reset", kFacts);
    CHECK(l);
}

TEST_CASE("install.source: a bundle path; Kairos' file: and dir: prefixes", "[config][install]") {
    auto l =
        load({{"/oem/i.yaml", "#cloud-config\ninstall:\n  auto: true\n  source: file:/b.tar\n"}});
    CHECK(l.diags.error_count() == 0);
    CHECK(l.config.install.auto_install);
    CHECK(l.config.install.source == "/b.tar");
    l = load({{"/oem/i.yaml", "#cloud-config\ninstall:\n  source: dir:/media/bundle\n"}});
    CHECK(l.config.install.source == "/media/bundle");
    // Kairos' registry spellings become Ballast's oci:// references; https:// URLs stay.
    for (auto [given, want] : {std::pair{"oci:quay.io/os:1", "oci://quay.io/os:1"},
                               {"docker:reg.local/os@sha256:ab", "oci://reg.local/os@sha256:ab"},
                               {"docker://reg.local/os:3", "oci://reg.local/os:3"},
                               {"oci://reg.local/os:2", "oci://reg.local/os:2"},
                               {"https://h/os.tar", "https://h/os.tar"}}) {
        l = load(
            {{"/oem/i.yaml", std::string("#cloud-config\ninstall:\n  source: ") + given + "\n"}});
        CHECK(l.diags.items().empty());
        CHECK(l.config.install.source == want);
    }
    // Anything else: a warning, so the file's other settings still apply (the installer
    // refuses such a source when it has to use it).
    for (const char* bad : {"ftp://h/os.tar", "os.tar", "file:os.tar"}) {
        l = load({{"/oem/i.yaml", std::string("#cloud-config\ninstall:\n  source: ") + bad +
                                      "\nhostname: kept\n"}});
        CHECK(l.diags.error_count() == 0);
        CHECK(has_diag(l.diags, "/oem/i.yaml:3"));
        CHECK(has_diag(l.diags, "warning: install.source: not a bundle Ballast can install"));
        CHECK(step_named(l.config, "initramfs", "hostname").hostname == "kept");
    }
}

TEST_CASE("Kairos event stages run at Ballast's matching moments", "[config][stages]") {
    auto l = load({{"/oem/k.yaml", R"(#cloud-config
k3s:
  enabled: true
stages:
  kairos-install.pre.before:
    - name: pre-before
  kairos-install.pre:
    - name: pre
  before-install:
    - name: own-before-install
  after-install:
    - name: own-after-install
  kairos-install.after:
    - name: install-after
  boot.after:
    - name: boot-after
  provider-kairos.bootstrap.before.master:
    - name: bootstrap-before
  k3s-ready:
    - name: own-ready
  provider-kairos.bootstrap.after.k3s-ready:
    - name: ready-step
  provider-kairos.bootstrap.after.agent:
    - name: agent-step
  kairos-uki-upgrade.pre:
    - name: never-uki
  after-upgrade-chroot:
    - name: never-chroot
  my-stage:
    - name: custom
)"}});
    REQUIRE(l.diags.error_count() == 0);
    auto names = [&](std::string_view stage) {
        std::vector<std::string> out;
        for (const auto* s : stages::plan_stage(l.config, stage).steps)
            out.push_back(s->name);
        return out;
    };
    using V = std::vector<std::string>;
    CHECK(names("before-install") == V{"pre-before", "pre", "own-before-install"});
    CHECK(names("after-install") == V{"own-after-install", "install-after"});
    // The bootstrap.before steps come last in the boot stage: the k3s step follows them.
    CHECK(names("boot") == V{"boot-after", "bootstrap-before"});
    // After the stage's own steps; a role of the other kind (agent, on this server) does not run.
    CHECK(names("k3s-ready") == V{"own-ready", "ready-step"});
    // Asked for by name, an event name runs on its own (Kairos' own run-stage unit does this).
    CHECK(names("provider-kairos.bootstrap.after.k3s-ready") == V{"ready-step"});
    CHECK(names("reconcile").empty());
    CHECK(has_diag(l.diags,
                   "k.yaml:25:3: warning: stage 'kairos-uki-upgrade.pre': Kairos runs "
                   "it only under its trusted boot"));
    CHECK(has_diag(l.diags, "stage 'after-upgrade-chroot': Kairos runs it chrooted"));
    CHECK(has_diag(l.diags, "custom stage 'my-stage' runs only when asked for by name"));
    // Only these three: event names Ballast runs are not warned about.
    CHECK(l.diags.items().size() == 3);

    // Without k3s in the config, nothing sets k3s up, and bootstrap.before has no moment.
    auto plain = load({{"/oem/p.yaml", R"(#cloud-config
stages:
  provider-kairos.bootstrap.before.master:
    - name: bootstrap-before
)"}});
    CHECK(stages::plan_stage(plain.config, "boot").steps.empty());

    // On an agent: the agent's and role-less names run, a master's do not (roles in name order).
    auto agent = load({{"/oem/a.yaml", R"(#cloud-config
k3s-agent:
  enabled: true
stages:
  provider-kairos.bootstrap.after.worker: [{name: worker}]
  provider-kairos.bootstrap.after.master: [{name: master}]
  provider-kairos.bootstrap.after.k3s-ready: [{name: ready}]
  provider-kairos.bootstrap.after.agent: [{name: agent}]
)"}});
    std::vector<std::string> got;
    for (const auto* s : stages::plan_stage(agent.config, "k3s-ready").steps)
        got.push_back(s->name);
    CHECK(got == V{"agent", "ready", "worker"});
}

TEST_CASE("stage names: substages, event names and their roles", "[config][stages]") {
    CHECK(classify_stage("boot").cls == StageClass::own);
    CHECK(classify_stage("boot.before").base == "boot");
    CHECK(classify_stage("kairos-install.after").cls == StageClass::alias);
    CHECK(classify_stage("kairos-install.after").base == "kairos-install.after");
    CHECK(classify_stage("kairos-install.pre.after").base == "kairos-install.pre");
    CHECK(classify_stage("provider-kairos.bootstrap.after.k3s-ready").base ==
          "provider-kairos.bootstrap.after.k3s-ready");
    CHECK(classify_stage("provider-kairos.bootstrap.after.k3s-ready.before").base ==
          "provider-kairos.bootstrap.after.k3s-ready");
    CHECK(classify_stage("provider-kairos.bootstrap.after.").cls == StageClass::custom);
    CHECK(classify_stage("provider-kairos.bootstrap.after.a.b").cls == StageClass::custom);
    CHECK(classify_stage("after-reset-chroot.after").cls == StageClass::never);
    CHECK(classify_stage("boot.foo").cls == StageClass::custom);
}

TEST_CASE("datasource providers: the clouds, k3OS' data_sources, unknown names",
          "[config][datasource]") {
    auto l = load({{"/var/lib/rancher/k3os/config.yaml", R"(k3os:
  data_sources: [aws, packet, cdrom]
)"},
                   {"/oem/d.yaml", R"(#cloud-config
stages:
  boot:
    - datasource:
        providers: [gcp, vmware, hetzner]
        timeout: 5s
)"}});
    REQUIRE(l.diags.error_count() == 0);
    const auto& ds = l.config.stages.at("network.before").at(0);
    CHECK(ds.datasource.providers == std::vector<std::string>{"aws", "packet", "cdrom"});
    const auto& boot = l.config.stages.at("boot");
    const auto& step = *std::find_if(boot.begin(), boot.end(),
                                     [](const Step& s) { return !s.datasource.empty(); });
    CHECK(step.datasource.providers == std::vector<std::string>{"gcp", "hetzner"});
    CHECK(step.datasource.timeout == std::chrono::seconds(5));
    CHECK(has_diag(l.diags,
                   "d.yaml:5:20: warning: stages.boot[0].datasource.providers: provider "
                   "'vmware' is not supported: it is skipped"));
    auto bad = load({{"/oem/b.yaml",
                      "#cloud-config\nstages:\n  boot:\n    - datasource:\n"
                      "        providers: [awz]\n"}});
    CHECK(has_diag(bad.diags,
                   "unknown provider 'awz' (supported: nocloud, cdrom, config_url, "
                   "aws, gcp, azure, openstack, digitalocean, hetzner, vultr, "
                   "scaleway, equinix)"));
}
