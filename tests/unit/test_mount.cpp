// mount/layout: the immutable root's plan and the persistent-path rules, and agent.yaml mount:.
#include <catch2/catch.hpp>

#include <sys/mount.h>

#include <algorithm>
#include <string>
#include <vector>

#include "ballast/config/agent_settings.hpp"
#include "ballast/mount/layout.hpp"

using namespace ballast;
using namespace ballast::mount;

namespace {

std::string problems_of(std::vector<std::string> paths) {
    std::string out;
    for (const auto& p : check_persistent_paths(paths))
        out += p + "\n";
    return out;
}

Layout layout_with(std::vector<std::string> paths) {
    Layout l;
    l.persistent_device = "/dev/vda5";
    l.oem_device = "/dev/vda2";
    l.persistent_paths = std::move(paths);
    return l;
}

}  // namespace

TEST_CASE("persistent paths: the defaults pass their own rules", "[mount]") {
    CHECK(problems_of(default_persistent_paths()).empty());
    CHECK(std::is_sorted(default_persistent_paths().begin(), default_persistent_paths().end()) ==
          false);  // order does not matter: plan() sorts
}

TEST_CASE("persistent paths: each rule has its message", "[mount]") {
    CHECK(problems_of({"var/log"}) == "[0] 'var/log': expected an absolute path\n");
    CHECK(problems_of({"/var/log/"}) == "[0] '/var/log/': no trailing '/'\n");
    CHECK(problems_of({"/var//log"}).find("without '//', '.' or '..'") != std::string::npos);
    CHECK(problems_of({"/var/./log"}).find("without '//'") != std::string::npos);
    CHECK(problems_of({"/var/../etc"}).find("without '//'") != std::string::npos);
    CHECK(problems_of({"/a,b"}).find("',', ':' and newlines") != std::string::npos);
    CHECK(problems_of({"/"}).find("the root is the read-only slot") != std::string::npos);
    CHECK(problems_of({"/etc"}).find("the layout mounts it already") != std::string::npos);
    CHECK(problems_of({"/var"}).find("the layout mounts it already") != std::string::npos);
    CHECK(problems_of({"/proc/sys"}).find("/proc cannot hold") != std::string::npos);
    CHECK(problems_of({"/run/x"}).find("/run cannot hold") != std::string::npos);
    CHECK(problems_of({"/usr/lib"}).find("/usr belongs to the slot image") != std::string::npos);
    CHECK(problems_of({"/usr/local/bin", "/etc/ssh", "/srv"}).empty());
    CHECK(problems_of({"/variant", "/var/lib/x"}).empty());  // component-wise, not by prefix
}

TEST_CASE("persistent paths: no two share a place", "[mount]") {
    CHECK(problems_of({"/home", "/opt", "/home"}) == "[2] '/home': listed twice (also [0])\n");
    CHECK(problems_of({"/var/lib/rancher", "/var/lib"}) ==
          "[1] '/var/lib/rancher' is inside '/var/lib' ([0]): both would keep it in one place; "
          "list only '/var/lib'\n");
    // Kairos's encoding would put these two in one folder; ours keeps them apart.
    CHECK(problems_of({"/var/lib-x", "/var/lib/x"}).empty());
}

TEST_CASE("layout plan: storage first, then overlays, then binds in name order", "[mount]") {
    auto steps = plan(layout_with({"/var/lib/rancher", "/home", "/var/log"}));
    REQUIRE(steps);
    std::vector<std::string> order;
    for (const auto& s : *steps)
        order.push_back(s.node_path);
    CHECK(order == std::vector<std::string>{"/run/ballast/persistent", "/run/ballast/ephemeral",
                                            "/oem", "/etc", "/var", "/tmp", "/home",
                                            "/var/lib/rancher", "/var/log"});
    const auto& s = *steps;
    CHECK(s[0].phase == Step::Phase::storage);
    CHECK(s[2].phase == Step::Phase::storage);
    CHECK(s[3].phase == Step::Phase::root);
    CHECK(s[0].source == "/dev/vda5");
    CHECK_FALSE(s[0].read_only);
    CHECK(s[2].read_only);
    CHECK(s[2].optional);
    CHECK(s[2].target == "/sysroot/oem");
    CHECK(s[3].options ==
          "lowerdir=/sysroot/etc,upperdir=/run/ballast/persistent/.ballast/etc/upper,"
          "workdir=/run/ballast/persistent/.ballast/etc/"
          "work,index=off,redirect_dir=off,metacopy=off");
    CHECK(s[4].upper == "/run/ballast/ephemeral/var/upper");
    CHECK(s[5].flags == (MS_NOSUID | MS_NODEV));
    CHECK(s[5].options == "mode=1777");
    CHECK(s[6].source == "/run/ballast/persistent/.ballast/state/home");
    CHECK(s[6].seed_from == "/sysroot/home");
    CHECK(s[6].seed_tmp == "/run/ballast/persistent/.ballast/seeding/home");
    CHECK(s[6].root == "/sysroot");
    CHECK(s[0].root.empty());
    CHECK_FALSE(s[6].create_target);  // /home must be in the read-only image
    CHECK(s[7].create_target);        // under the /var overlay
    CHECK(s[7].target == "/sysroot/var/lib/rancher");
}

TEST_CASE("layout plan: /etc on tmpfs, no OEM, bad inputs", "[mount]") {
    auto l = layout_with({});
    l.etc = EtcMode::tmpfs;
    l.oem_device.clear();
    auto steps = plan(l);
    REQUIRE(steps);
    REQUIRE(steps->size() == 5);
    CHECK((*steps)[2].node_path == "/etc");
    CHECK((*steps)[2].upper == "/run/ballast/ephemeral/etc/upper");

    auto nested = plan(layout_with({"/opt", "/opt/x"}));
    REQUIRE_FALSE(nested);
    CHECK(nested.error().what().find("persistent_paths: [1] '/opt/x' is inside '/opt'") == 0);
    auto comma = layout_with({});
    comma.sysroot = "/sys,root";
    CHECK_FALSE(plan(comma));
    auto nodev = layout_with({});
    nodev.persistent_device.clear();
    CHECK_FALSE(plan(nodev));
}

TEST_CASE("agent settings: mount block", "[mount][settings]") {
    auto d = config::parse_agent_settings("", "agent.yaml");
    REQUIRE(d);
    CHECK(d->mount.device == "/dev/disk/by-partlabel/BALLAST_PERSISTENT");
    CHECK(d->mount.etc == EtcMode::persistent);
    CHECK(d->mount.persistent_paths == default_persistent_paths());

    auto s = config::parse_agent_settings(
        "mount:\n  etc: tmpfs\n  oem_device: \"\"\n  persistent_paths: [/srv, /var/lib/k]\n"
        "  device_timeout: 5s\n",
        "agent.yaml");
    REQUIRE(s);
    CHECK(s->mount.etc == EtcMode::tmpfs);
    CHECK(s->mount.oem_device.empty());
    CHECK(s->mount.persistent_paths == std::vector<std::string>{"/srv", "/var/lib/k"});
    CHECK(s->mount.device_timeout == std::chrono::seconds(5));

    auto bad = config::parse_agent_settings(
        "mount:\n  etc: disk\n  persistent_paths: [/a, /a/b]\n  devcie: /dev/x\n", "agent.yaml");
    REQUIRE_FALSE(bad);
    const auto text = bad.error().what();
    CHECK(text.find("agent.yaml:2:8: mount.etc: expected persistent or tmpfs, not 'disk'") !=
          std::string::npos);
    CHECK(text.find("agent.yaml:3:21: mount.persistent_paths: [1] '/a/b' is inside '/a'") !=
          std::string::npos);
    CHECK(text.find("agent.yaml:4:3: unknown key 'mount.devcie'") != std::string::npos);
}
