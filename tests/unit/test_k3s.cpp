#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>

#include "ballast/config/loader.hpp"
#include "ballast/k3s/flags.hpp"
#include "ballast/k3s/leave.hpp"
#include "ballast/k3s/render.hpp"

using namespace ballast;
using namespace ballast::config;
using nlohmann::json;

namespace {

const json kFacts = {{"MachineID", "0123456789abcdef0123456789abcdef"},
                     {"Hostname", "node0"},
                     {"UUID", "4c4c4544-0042-3510-8052-b4c04f4e4232"},
                     {"Random", "r4nd0m"},
                     {"Values", json::object()}};

Config load_text(const std::string& name, const std::string& text) {
    std::vector<SourceFile> srcs{{name, text, detect_kind(text, name)}};
    auto l = load_sources(std::move(srcs), kFacts);
    INFO(l.diags.errors_text());
    REQUIRE(!l.diags.has_errors());
    return l.config;
}

Config load_example(const std::string& file) {
    std::ifstream in(std::string(BALLAST_EXAMPLES) + "/" + file);
    REQUIRE(in.good());
    std::stringstream ss;
    ss << in.rdbuf();
    return load_text("/oem/" + file, ss.str());
}

k3s::Rendering rendered(const Config& c) {
    auto r = k3s::render(c);
    INFO((r ? std::string() : r.error().what()));
    REQUIRE(r);
    return *r;
}

std::string render_error(const std::string& yaml) {
    auto r = k3s::render(load_text("/oem/n.yaml", yaml));
    REQUIRE(!r);
    return r.error().what();
}

}  // namespace

TEST_CASE("k3s: every example renders, and renders the same bytes twice", "[k3s]") {
    struct Case {
        const char* file;
        k3s::Role role;
        std::vector<std::string> in_config;
    };
    const std::vector<Case> cases = {
        {"single-server.yaml",
         k3s::Role::server,
         {"disable:\n  - \"traefik\"\n", "write-kubeconfig-mode: \"0640\"\n",
          "write-kubeconfig: \"/run/k3s/kubeconfig\"\n"}},
        {"agent-join.yaml",
         k3s::Role::agent,
         {"server: \"https://10.20.0.10:6443\"\n",
          "token: \"K10c3b7f1d2e3a4b5c6d7e8f9::server:5f4e3d2c1b0a\"\n",
          "node-label:\n  - \"site=store-042\"\n",
          "node-taint:\n  - \"dedicated=edge:NoSchedule\"\n"}},
        {"ha-first-server.yaml",
         k3s::Role::server,
         {"cluster-init: true\n", "tls-san:\n  - \"10.20.0.100\"\n",
          "token: \"shared-cluster-secret\"\n"}},
        {"k3os-config.yaml",
         k3s::Role::agent,
         {"server: \"https://k3s.example:6443\"\n", "node-label:\n  - \"zone=a\"\n",
          "node-taint:\n  - \"dedicated=edge:NoSchedule\"\n"}},
    };
    for (const auto& c : cases) {
        INFO(c.file);
        auto cfg = load_example(c.file);
        auto a = rendered(cfg), b = rendered(cfg);
        CHECK(a.role == c.role);
        CHECK(a.unit == (c.role == k3s::Role::server ? "k3s.service" : "k3s-agent.service"));
        for (const auto& s : c.in_config)
            CHECK(a.config_yaml().find(s) != std::string::npos);
        CHECK(a.args.empty());
        // Unchanged input → the same bytes → no rewrite, no restart.
        CHECK(a.config_yaml() == b.config_yaml());
        CHECK(k3s::unit_file(a, "/usr/bin/k3s") == k3s::unit_file(b, "/usr/bin/k3s"));
        CHECK(k3s::env_file(a, "") == k3s::env_file(b, ""));
    }
    // The ones without k3s render nothing.
    CHECK(rendered(load_example("stages.yaml")).role == k3s::Role::none);
}

TEST_CASE("k3s: the HA example's VIP gets a kube-vip static pod and one SAN", "[k3s]") {
    auto r = rendered(load_example("ha-first-server.yaml"));
    REQUIRE(r.kubevip_manifest);
    CHECK(r.kubevip_manifest->find("kind: Pod") != std::string::npos);
    CHECK(r.kubevip_manifest->find("value: \"10.20.0.100\"") != std::string::npos);
    CHECK(r.kubevip_manifest->find("value: \"eth0\"") != std::string::npos);
    CHECK(r.config["tls-san"] == json::array({"10.20.0.100"}));
}

TEST_CASE("k3s: arguments fold into config keys where k3s has them", "[k3s]") {
    auto r = rendered(load_text("/oem/n.yaml", R"(#cloud-config
k3s:
  enabled: true
  args:
    - --cluster-init
    - --node-label
    - a=b
    - --node-label=c=d
    - --flannel-backend=wireguard-native
    - --secrets-encryption=false
    - --made-up-flag=1
  env:
    K3S_NODE_NAME: n1
    HTTPS_PROXY: http://proxy:3128
)"));
    CHECK(r.config["cluster-init"] == true);
    CHECK(r.config["node-label"] == json::array({"a=b", "c=d"}));
    CHECK(r.config["flannel-backend"] == "wireguard-native");
    CHECK(r.config["secrets-encryption"] == false);
    CHECK(r.config["node-name"] == "n1");
    CHECK(r.args == std::vector<std::string>{"--made-up-flag=1"});
    CHECK(r.env == std::map<std::string, std::string>{{"HTTPS_PROXY", "http://proxy:3128"}});
    CHECK(k3s::flag_kind("tls-san") == k3s::FlagKind::list);
    CHECK(k3s::flag_kind("cluster-init") == k3s::FlagKind::boolean);
    CHECK(k3s::flag_kind("token") == k3s::FlagKind::string);
    CHECK(!k3s::flag_kind("made-up-flag"));
}

TEST_CASE("k3s: replace_args drops the defaults, replace_env the existing file", "[k3s]") {
    const std::string base = R"(#cloud-config
kubevip: {eip: 10.0.0.9}
k3s:
  enabled: true
  env: {A: "1", Q: 'say "hi" \ there'}
)";
    auto merged = rendered(load_text("/oem/n.yaml", base));
    CHECK(merged.config["tls-san"] == json::array({"10.0.0.9"}));
    auto replaced =
        rendered(load_text("/oem/n.yaml", base + "  replace_args: true\n  replace_env: true\n"));
    CHECK(!replaced.config.contains("tls-san"));
    const std::string existing = "# by hand\nA=\"0\"\nKEEP=\"x y\"\n";
    const std::string m = k3s::env_file(merged, existing);
    CHECK(m == "A=\"1\"\nKEEP=\"x y\"\nQ=\"say \\\"hi\\\" \\\\ there\"\n");
    // Reading our own output back changes nothing (no rewrite on the next boot).
    CHECK(k3s::env_file(merged, m) == m);
    CHECK(k3s::env_file(replaced, existing) == "A=\"1\"\nQ=\"say \\\"hi\\\" \\\\ there\"\n");
}

TEST_CASE("k3s: unit file as the upstream installer writes it, arguments quoted", "[k3s]") {
    auto r = rendered(load_text("/oem/n.yaml", R"(#cloud-config
k3s-agent:
  enabled: true
  args: ['--unknown=50% "q"']
  env: {K3S_URL: "https://s:6443", K3S_TOKEN: t}
)"));
    auto u = k3s::unit_file(r, "/usr/local/bin/k3s");
    CHECK(u.find("Type=exec\n") != std::string::npos);
    CHECK(u.find("KillMode=process\nDelegate=yes\n") != std::string::npos);
    CHECK(u.find("EnvironmentFile=-/etc/systemd/system/k3s-agent.service.env") !=
          std::string::npos);
    CHECK(u.find("ExecStart=/usr/local/bin/k3s agent \\\n    \"--unknown=50%% \\\"q\\\"\"") !=
          std::string::npos);
}

TEST_CASE("k3s: what cannot work is an error naming the block", "[k3s]") {
    CHECK_THAT(render_error("#cloud-config\nk3s-agent:\n  enabled: true\n  env: {K3S_TOKEN: t}\n"),
               Catch::Contains("/oem/n.yaml:3:3: k3s-agent: a k3s agent needs the server's URL"));
    CHECK_THAT(
        render_error(
            "#cloud-config\nk3s-agent:\n  enabled: true\n  env: {K3S_URL: 'https://s:6443'}\n"),
        Catch::Contains("needs the cluster token"));
    CHECK_THAT(
        render_error("#cloud-config\nk3s:\n  enabled: true\n  args: [--server=https://s:6443]\n"),
        Catch::Contains("a server joining https://s:6443 needs the cluster token"));
    CHECK_THAT(render_error("#cloud-config\nk3s:\n  enabled: true\n  args: [--cluster-init, "
                            "--server=https://s:6443, --token=t]\n"),
               Catch::Contains("cannot be combined"));
    CHECK_THAT(render_error("#cloud-config\nk3s:\n  enabled: true\n  args: [server]\n"),
               Catch::Contains("the role comes from the block"));
    CHECK_THAT(render_error("#cloud-config\nk3s:\n  enabled: true\n  args: [--token]\n"),
               Catch::Contains("--token needs a value"));
    CHECK_THAT(render_error("#cloud-config\nkubevip: {eip: 10.0.0.9}\nk3s-agent:\n  enabled: true\n"
                            "  env: {K3S_URL: 'https://s:6443', K3S_TOKEN: t}\n"),
               Catch::Contains("kubevip: the VIP runs on servers"));
}

TEST_CASE("k3s: secrets and odd bytes stay out of the unit and never break the files", "[k3s]") {
    // -t/-s are k3s's aliases: the token goes to config.yaml (0600), not to ExecStart (0644).
    auto r = rendered(load_text("/oem/n.yaml", R"(#cloud-config
k3s-agent:
  enabled: true
  args: [-s, "https://s:6443", -t, "s3cr3t", "--made-up=$HOME ${X}"]
)"));
    CHECK(r.config["token"] == "s3cr3t");
    CHECK(r.config["server"] == "https://s:6443");
    auto u = k3s::unit_file(r, "/usr/local/bin/k3s");
    CHECK(u.find("s3cr3t") == std::string::npos);
    CHECK(u.find("\"--made-up=$$HOME $${X}\"") != std::string::npos);
    CHECK_THAT(
        render_error(
            "#cloud-config\nk3s:\n  enabled: true\n  args: [\"--x=a\\nExecStartPre=/bin/evil\"]\n"),
        Catch::Contains("contains a control character"));
    // Bytes that are not UTF-8 are replaced, not thrown on.
    k3s::Rendering bad;
    bad.source = "t";
    bad.config["node-label"] = nlohmann::ordered_json::array({std::string("dmi=\xff\xfe")});
    CHECK(bad.config_yaml().find("dmi=\xEF\xBF\xBD") != std::string::npos);
}

TEST_CASE("drain_targets: what kubectl drain evicts from a pod list", "[k3s][leave]") {
    const auto list = nlohmann::json::parse(R"({"kind": "PodList", "items": [
      {"metadata": {"name": "web-1", "namespace": "shop",
                    "ownerReferences": [{"kind": "ReplicaSet", "name": "web"}]}},
      {"metadata": {"name": "svclb", "namespace": "kube-system",
                    "ownerReferences": [{"kind": "DaemonSet", "name": "svclb"}]}},
      {"metadata": {"name": "kube-vip", "namespace": "kube-system",
                    "annotations": {"kubernetes.io/config.mirror": "abc"}}},
      {"metadata": {"name": "job-1", "ownerReferences": [{"kind": "Job"}]},
       "status": {"phase": "Succeeded"}},
      {"metadata": {"name": "crashed"}, "status": {"phase": "Failed"}},
      {"metadata": {"name": "bare"}, "status": {"phase": "Running"}},
      {"metadata": {}}, 7, {"spec": {}}
    ]})");
    CHECK(k3s::drain_targets(list) == std::vector<std::string>{"shop/web-1", "default/bare"});
    for (const char* bad : {"{}", "[]", R"({"items": 3})", "null"})
        CHECK(k3s::drain_targets(nlohmann::json::parse(bad)).empty());
}
