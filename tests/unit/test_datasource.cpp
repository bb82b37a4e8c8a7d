// Cloud datasources: user-data decoding (gzip, MIME multipart, what is refused), the providers'
// payload parsers, and the detection order. The services themselves: integration/test_datasource.
#include <catch2/catch.hpp>

#include <fmt/format.h>
#include <zlib.h>

#include "ballast/config/loader.hpp"
#include "ballast/config/sources.hpp"
#include "ballast/core/encoding.hpp"
#include "ballast/datasource/network.hpp"
#include "ballast/datasource/providers.hpp"
#include "ballast/datasource/userdata.hpp"

using namespace ballast;
using namespace ballast::datasource;

namespace {

std::string gzip(const std::string& in) {
    z_stream z{};
    REQUIRE(deflateInit2(&z, 9, Z_DEFLATED, 16 + 15, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    std::string out(in.size() + 128, '\0');
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z.avail_in = static_cast<uInt>(in.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
    out.resize(z.total_out);
    deflateEnd(&z);
    return out;
}

std::string mime(const std::vector<std::pair<std::string, std::string>>& parts,
                 const std::string& boundary = "BOUNDARY") {
    std::string out = "Content-Type: multipart/mixed; boundary=\"" + boundary +
                      "\"\r\nMIME-Version: 1.0\r\n\r\npreamble\r\n";
    for (const auto& [headers, body] : parts)
        out += "--" + boundary + "\r\n" + (headers.empty() ? "" : headers + "\r\n") + "\r\n" +
               body + "\r\n";
    return out + "--" + boundary + "--\r\nepilogue\r\n";
}

const std::string kConfig = "#cloud-config\nhostname: a\n";

}  // namespace

TEST_CASE("user-data: plain, script, gzip", "[datasource]") {
    auto u = decode_user_data(kConfig);
    REQUIRE(u);
    CHECK(u->configs == std::vector<std::string>{kConfig});
    u = decode_user_data("#!/bin/bash\necho hi\n");
    REQUIRE(u);
    CHECK(u->scripts.size() == 1);
    u = decode_user_data(gzip(kConfig));
    REQUIRE(u);
    CHECK(u->configs == std::vector<std::string>{kConfig});
    u = decode_user_data("#kairos-config\nk3s: {}\n");
    REQUIRE(u);
    CHECK(u->configs.size() == 1);
    u = decode_user_data("");
    REQUIRE(u);
    CHECK(u->empty());
}

TEST_CASE("user-data: MIME multipart as cloud-init writes it", "[datasource]") {
    const std::string nested =
        mime({{"Content-Type: text/x-shellscript", "#!/bin/sh\necho n"}}, "inner");
    auto u = decode_user_data(mime({
        {"Content-Type: text/cloud-config; charset=\"us-ascii\"", kConfig},
        // A part typed cloud-config needs no header line.
        {"Content-Type: text/cloud-config\r\nContent-Transfer-Encoding: base64",
         base64_encode("users: []\n")},
        {"Content-Type: application/x-gzip", gzip("#!/bin/sh\necho gz\n")},
        // text/plain is typed by its first line, as cloud-init does.
        {"Content-Type: text/plain", "#cloud-config\nruncmd: []\n"},
        {"Content-Type: text/cloud-boothook", "#cloud-boothook\necho early"},
        {"Content-Type: text/x-include-url", "#include\nhttps://example.com/x"},
        {"Content-Type: multipart/mixed; boundary=\"inner\"",
         nested.substr(nested.find("\r\n\r\n") + 4)},
    }));
    REQUIRE(u);
    REQUIRE(u->configs.size() == 3);
    CHECK(u->configs[0] == kConfig);
    CHECK(u->configs[1] == "#cloud-config\nusers: []\n");
    CHECK(u->configs[2] == "#cloud-config\nruncmd: []\n");
    REQUIRE(u->scripts.size() == 2);
    CHECK(u->scripts[0] == "#!/bin/sh\necho gz\n");
    CHECK(u->scripts[1] == "#!/bin/sh\necho n");
    REQUIRE(u->ignored.size() == 2);
    CHECK(u->ignored[0] == "user-data: part 5 (text/cloud-boothook): not acted on by Ballast");
    CHECK(u->ignored[1] == "user-data: part 6 (text/x-include-url): not acted on by Ballast");
    // The whole multipart gzipped, as EC2 users often send it.
    auto z = decode_user_data(gzip(mime({{"Content-Type: text/cloud-config", kConfig}})));
    REQUIRE(z);
    CHECK(z->configs == std::vector<std::string>{kConfig});
}

TEST_CASE("user-data: MIME as cloud-init accepts it beyond the usual", "[datasource]") {
    // A single-part MIME message.
    auto u = decode_user_data("Content-Type: text/cloud-config\nMIME-Version: 1.0\n\nusers: []\n");
    REQUIRE(u);
    CHECK(u->configs == std::vector<std::string>{"#cloud-config\nusers: []\n"});
    // A nested multipart sent base64-encoded; a part with no headers (a blank line first).
    const std::string inner =
        "--in\r\nContent-Type: text/x-shellscript\r\n\r\n#!/bin/sh\r\n--in--\r\n";
    u = decode_user_data(mime({
        {"Content-Type: multipart/mixed; boundary=\"in\"\r\nContent-Transfer-Encoding: base64",
         base64_encode(inner)},
        {"", kConfig},
    }));
    REQUIRE(u);
    CHECK(u->scripts == std::vector<std::string>{"#!/bin/sh"});
    CHECK(u->configs == std::vector<std::string>{kConfig});
    // Parts it cannot read or type are reported and skipped, as cloud-init does; the rest applies.
    u = decode_user_data(mime({
        {"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable", "x"},
        {"Content-Type: text/plain", "just words"},
        {"Content-Type: text/cloud-config", kConfig},
    }));
    REQUIRE(u);
    CHECK(u->configs.size() == 1);
    REQUIRE(u->ignored.size() == 2);
    CHECK_THAT(u->ignored[0], Catch::Contains("quoted-printable"));
    CHECK_THAT(u->ignored[1], Catch::Contains("part 2: neither a cloud-config nor a script"));
}

TEST_CASE("user-data: what is refused, and why", "[datasource]") {
    auto err = [](const std::string& raw) {
        auto u = decode_user_data(raw);
        REQUIRE_FALSE(u);
        return std::string(u.error().what());
    };
    // Not echoed (user-data may hold secrets): its size only.
    CHECK(err("password: hunter2\n") ==
          "user-data: neither a cloud-config (#cloud-config) nor a script (#!) (18 bytes)");
    CHECK(err("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\n"
              "#cloud-config\n")
              .find("no closing boundary '--b--'") != std::string::npos);
    CHECK(err("Content-Type: multipart/mixed\n\n--b--\n").find("without a usable boundary") !=
          std::string::npos);
    CHECK(
        err(mime({{"Content-Type: text/cloud-config\r\nContent-Transfer-Encoding: base64", "@@@"}}))
            .find("user-data: part 1: bad base64") != std::string::npos);
    CHECK(err(mime({{"Content-Type: text/x-shellscript", "echo no shebang"}}))
              .find("must start with '#!'") != std::string::npos);
    CHECK(err(gzip("x") + "trailing").size() > 0);
    std::vector<std::pair<std::string, std::string>> many(kMaxParts + 1,
                                                          {"Content-Type: text/plain", kConfig});
    CHECK(err(mime(many)).find("more than 64 parts") != std::string::npos);
    // Nested deeper than the bound: each level one multipart part holding the next.
    std::string headers = "Content-Type: text/plain", body = kConfig;
    for (int i = 0; i < 6; ++i) {
        const std::string b = "b" + std::to_string(i);
        auto m = mime({{headers, body}}, b);
        headers = "Content-Type: multipart/mixed; boundary=\"" + b + "\"";
        body = m.substr(m.find("\r\n\r\n") + 4);
    }
    const std::string deep = headers + "\r\n\r\n" + body;
    CHECK(err(deep).find("nested deeper") != std::string::npos);
    // A gzip bomb stops at the bound, and so do many parts that each inflate a little: every
    // byte gzip gives back counts, containers included.
    CHECK(err(gzip(std::string(kMaxUserData + 1, '#'))).find("gzip") != std::string::npos);
    const std::string big = gzip(
        mime({{"Content-Type: text/plain", "#cloud-config\n" + std::string(1u << 20, ' ')}}, "x") +
        std::string(5u << 20, '\n'));
    std::vector<std::pair<std::string, std::string>> bombs(
        4, {"Content-Type: application/gzip\r\nContent-Transfer-Encoding: base64",
            base64_encode(big)});
    CHECK_THAT(err(mime(bombs)), Catch::Contains("part 3: gzip: gunzip: output larger than"));
}

TEST_CASE("datasource payloads: each platform's document to what Ballast uses", "[datasource]") {
    auto d = parse_digitalocean(
        R"({"droplet_id": 3164444, "hostname": "do-1", "public_keys": ["ssh-ed25519 A a\nssh-rsa B b"],)"
        R"( "user_data": "#cloud-config\n"})");
    REQUIRE(d);
    CHECK(d->instance_id == "3164444");
    CHECK(d->ssh_keys == std::vector<std::string>{"ssh-ed25519 A a", "ssh-rsa B b"});
    CHECK(d->user_data == std::optional<std::string>("#cloud-config\n"));
    auto o = parse_openstack(
        R"({"uuid": "u-1", "name": "os-1.novalocal", "public_keys": {"k": "ssh-rsa K"}})");
    REQUIRE(o);
    CHECK(o->hostname == "os-1");
    CHECK(o->ssh_keys == std::vector<std::string>{"ssh-rsa K"});
    auto h = parse_hetzner("hostname: hz\ninstance-id: 42\npublic-keys:\n- ssh-ed25519 H h\n");
    REQUIRE(h);
    CHECK((h->hostname == "hz" && h->instance_id == "42" && h->ssh_keys.size() == 1));
    auto a = parse_azure(
        R"({"compute": {"vmId": "v", "osProfile": {"computerName": "az"}, "publicKeys": [{"keyData": "ssh-rsa Z"}],)"
        R"( "userData": "I2Nsb3VkLWNvbmZpZwo="}})");
    REQUIRE(a);
    CHECK((a->hostname == "az" && a->ssh_keys == std::vector<std::string>{"ssh-rsa Z"}));
    CHECK(a->user_data == std::optional<std::string>("#cloud-config\n"));
    auto s = parse_scaleway(
        R"({"id": "s", "hostname": "sc", "ssh_public_keys": [{"key": "ssh-rsa S", "fingerprint": "f"}]})");
    REQUIRE(s);
    CHECK(s->ssh_keys == std::vector<std::string>{"ssh-rsa S"});
    auto v = parse_vultr(
        R"({"instance-v2-id": "v2", "hostname": "vu", "public-keys": ["ssh-rsa V"], "user-data": ""})");
    REQUIRE(v);
    CHECK((v->instance_id == "v2" && !v->user_data));
    CHECK(parse_gce_ssh_keys(
              "alice:ssh-ed25519 AAAA alice\n\nbad line without user\nbob:ssh-rsa B\n") ==
          std::vector<std::string>{"ssh-ed25519 AAAA alice", "ssh-rsa B"});
    CHECK(parse_aws_key_indexes("0=one\n1=two\nx=no\n") == std::vector<std::string>{"0", "1"});

    auto bad = [](const Result<Metadata>& r, const char* what) {
        REQUIRE_FALSE(r);
        CHECK_THAT(std::string(r.error().what()), Catch::Contains(what));
    };
    bad(parse_digitalocean("not json"), "metadata/v1.json: not valid JSON");
    bad(parse_digitalocean("[1]"), "not a JSON object");
    bad(parse_digitalocean(R"({"hostname": [1]})"), "hostname is not a string");
    bad(parse_equinix(R"({"ssh_keys": [{"no": 1}]})"),
        "ssh_keys holds something that is not a key");
    bad(parse_hetzner("[: bad"), "not valid YAML");
    bad(parse_hetzner("- a\n"), "not a mapping");
    bad(parse_azure(R"({"network": {}})"), "no compute object");
    bad(parse_azure(R"({"compute": {"userData": "@@"}})"), "compute.userData");
}

TEST_CASE("datasource detection: the firmware's platform first, aliases", "[datasource]") {
    CHECK(find_provider("packet")->name == "equinix");
    CHECK(find_provider("ec2")->name == "aws");
    CHECK(find_provider("gce")->name == "gcp");
    CHECK(find_provider("nocloud") == nullptr);
    CHECK(is_step_provider("nocloud"));
    CHECK_FALSE(is_step_provider("vmware"));
    Dmi dmi;
    dmi.sys_vendor = "Hetzner";
    auto order = detection_order({"aws", "ec2", "hetzner", "gcp"}, dmi);
    std::vector<std::string_view> names;
    for (const auto* p : order)
        names.push_back(p->name);
    CHECK(names == std::vector<std::string_view>{"hetzner", "aws", "gcp"});
    Dmi azure;
    azure.chassis_asset_tag = "7783-7084-3265-9085-8269-3286-77";
    CHECK(find_provider("azure")->identified(azure));
    Dmi aws;
    aws.product_uuid = "EC2E1916-9099-7CAF-FD21-012345ABCDEF";
    CHECK(find_provider("aws")->identified(aws));
    CHECK_FALSE(find_provider("aws")->identified(azure));
}

TEST_CASE("Azure: the wireserver's goal state and the ready report", "[datasource]") {
    auto gs = parse_azure_goal_state(
        "<GoalState><Incarnation>3</Incarnation><Container><ContainerId>c-1</ContainerId>"
        "<RoleInstanceList><RoleInstance><InstanceId>i._1</InstanceId></RoleInstance>"
        "</RoleInstanceList></Container></GoalState>");
    REQUIRE(gs);
    CHECK((gs->incarnation == "3" && gs->container_id == "c-1" && gs->instance_id == "i._1"));
    auto report = azure_ready_report(*gs);
    CHECK_THAT(report, Catch::Contains("<GoalStateIncarnation>3</GoalStateIncarnation>"));
    CHECK_THAT(report, Catch::Contains("<InstanceId>i._1</InstanceId>"));
    CHECK_THAT(report, Catch::Contains("<State>Ready</State>"));
    CHECK_FALSE(parse_azure_goal_state("<GoalState><Incarnation>1</Incarnation></GoalState>"));
    // Ids go back into XML: markup in them is refused, not echoed.
    auto evil = parse_azure_goal_state(
        "<GoalState><Incarnation>1</Incarnation><Container><ContainerId>x</ContainerId>"
        "<RoleInstanceList><RoleInstance><InstanceId>a&lt;b</InstanceId></RoleInstance>"
        "</RoleInstanceList></Container></GoalState>");
    REQUIRE_FALSE(evil);
    CHECK_THAT(std::string(evil.error().what()), Catch::Contains("unexpected characters"));
    // Markup that is not XML is an error naming the line, not a guess.
    auto broken = parse_azure_goal_state("<GoalState>\n<Incarnation>1</GoalState>");
    REQUIRE_FALSE(broken);
    CHECK(broken.error().message() == "goal state:2: mismatched tag");
    CHECK(evil.error().message() == "goal state:1: InstanceId with unexpected characters");
}

TEST_CASE("Azure: ovf-env.xml from the provisioning DVD", "[datasource][azure]") {
    const auto ovf = test::read_text(std::string(BALLAST_TEST_DATA) + "/azure/ovf-env.xml");
    auto m = parse_azure_ovf(ovf);
    REQUIRE(m);
    REQUIRE(*m);
    CHECK((*m)->provider == "azure");
    CHECK((*m)->hostname == "edge-az-1");
    // The key without a Value (a key pair for the user's own use) gives nothing.
    CHECK((*m)->ssh_keys ==
          std::vector<std::string>{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOvf azure-ovf-key"});
    REQUIRE((*m)->user_data);
    CHECK((*m)->user_data->starts_with("#cloud-config\nhostname: from-custom-data\n"));
    // The password is never kept anywhere in what comes back.
    CHECK(fmt::format("{} {} {} {}", (*m)->hostname, (*m)->instance_id, (*m)->origin,
                      *(*m)->user_data)
              .find("Secret-Do-Not-Keep") == std::string::npos);

    auto edited = [&](std::string_view from, std::string_view to) {
        std::string s = ovf;
        const auto at = s.find(from);
        REQUIRE(at != std::string::npos);
        s.replace(at, from.size(), to);
        return parse_azure_ovf(s);
    };
    auto err = [&](std::string_view from, std::string_view to) {
        auto r = edited(from, to);
        REQUIRE_FALSE(r);
        return r.error().message();
    };
    // Not Azure's: no ProvisioningSection in Azure's namespace.
    auto not_azure = parse_azure_ovf(
        R"(<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1"><x/></Environment>)");
    REQUIRE(not_azure);
    CHECK_FALSE(*not_azure);
    // Without custom data there is no user-data; without SSH no keys; an empty CustomData (as
    // Azure sends it when none was given) is empty user-data.
    auto element = [&](std::string_view tag) {
        const auto from = ovf.find("<ns1:" + std::string(tag) + ">");
        const auto end = ovf.find("</ns1:" + std::string(tag) + ">");
        REQUIRE((from != std::string::npos && end != std::string::npos));
        return ovf.substr(from, end + tag.size() + 7 - from);
    };
    auto none = edited(element("CustomData"), "");
    REQUIRE(none);
    REQUIRE(*none);
    CHECK_FALSE((*none)->user_data);
    none = edited(element("SSH"), "");
    REQUIRE((none && *none));
    CHECK((*none)->ssh_keys.empty());
    auto empty = edited(element("CustomData"), "<ns1:CustomData>\n  </ns1:CustomData>");
    REQUIRE((empty && *empty));
    CHECK_FALSE((*empty)->user_data);

    // The copy kept once the DVD is gone reads back the same, without the password.
    auto odd = **m;
    odd.ssh_keys.push_back("ssh-ed25519 AAAA <odd> & \"quoted\" 'key'");
    odd.hostname = "edge\x01-az-1";  // from IMDS's JSON: XML cannot carry it, the copy drops it
    const auto copy = azure_ovf_document(odd);
    CHECK(copy.find("Secret") == std::string::npos);
    auto back = parse_azure_ovf(copy);
    REQUIRE((back && *back));
    CHECK((*back)->hostname == "edge-az-1");
    CHECK((*back)->ssh_keys == odd.ssh_keys);
    CHECK((*back)->user_data == odd.user_data);
    odd.user_data.reset();
    odd.ssh_keys.clear();
    back = parse_azure_ovf(azure_ovf_document(odd));
    REQUIRE((back && *back));
    CHECK_FALSE((*back)->user_data);
    CHECK((*back)->ssh_keys.empty());

    // Errors name the line.
    CHECK(err("<ns1:HostName>edge-az-1</ns1:HostName>", "") ==
          "ovf-env.xml:8: LinuxProvisioningConfigurationSet has no HostName");
    CHECK(err("<ns1:HostName>edge-az-1</ns1:HostName>",
              "<ns1:HostName>a</ns1:HostName>\n<ns1:HostName>b</ns1:HostName>") ==
          "ovf-env.xml:11: HostName more than once in LinuxProvisioningConfigurationSet");
    CHECK(err("I2Nsb3Vk", "I2Nsb3V!") ==
          "ovf-env.xml:14: CustomData: invalid base64 character '!' at offset 8");
    CHECK(err("<ns1:PreprovisionedVm>false", "<ns1:PreprovisionedVm>True") ==
          "ovf-env.xml:39: a pre-provisioned VM (PreprovisionedVm) is not supported");
    CHECK(err("<ns1:PreprovisionedVMType xsi:nil=\"true\" />",
              "<ns1:PreprovisionedVMType>Savable</ns1:PreprovisionedVMType>") ==
          "ovf-env.xml:40: a pre-provisioned VM (PreprovisionedVMType Savable) is not supported");
    CHECK(edited("<ns1:PreprovisionedVm>false", "<ns1:PreprovisionedVm>y"));  // not cloud-init's
    CHECK(err("<ns1:PlatformSettings>", "<ns1:Settings>") == "ovf-env.xml:41: mismatched tag");
    CHECK(err(element("LinuxProvisioningConfigurationSet"), "") ==
          "ovf-env.xml:6: ProvisioningSection has no LinuxProvisioningConfigurationSet");
    CHECK(err("<?xml version=\"1.0\" encoding=\"utf-8\"?>", "<!DOCTYPE e [<!ENTITY x \"y\">]>") ==
          "ovf-env.xml:1: a DOCTYPE is not accepted");
}

namespace {

// A platform's version 1 document through the config loader, as the datasource step stores it:
// the netplan document it becomes (no diagnostics at all).
std::string netplan_of(const nlohmann::json& v1) {
    const std::string text = "#cloud-config\nnetwork: " + v1.dump() + "\n";
    std::vector<config::SourceFile> src{{"/run/p.yaml", text, config::detect_kind(text, "p.yaml")}};
    auto l = config::load_sources(std::move(src), nlohmann::json::object());
    std::string diags;
    for (const auto& d : l.diags.items())
        diags += d.text() + "\n";
    INFO(diags);
    CHECK(l.diags.items().empty());
    REQUIRE(l.config.network.size() == 1);
    return l.config.network.front().netplan;
}

const Macs kMacs{{"fa:16:3e:00:00:01", "ens3"},
                 {"fa:16:3e:00:00:02", "ens4"},
                 {"04:01:58:27:7f:01", "enp1s0"},
                 {"04:01:58:27:7f:02", "enp2s0"},
                 {"96:00:00:11:22:33", "enp7s0"}};

}  // namespace

TEST_CASE("platform network config: each platform's description as cloud-init converts it",
          "[datasource][network]") {
    // OpenStack: a bond of two NICs with a VLAN on it, static IPv4 with a default route and
    // IPv6 with an IPv6 netmask, DHCP on a third link, DNS services.
    auto os = openstack_network(R"({
      "links": [
        {"id": "tap1", "type": "phy", "ethernet_mac_address": "FA:16:3E:00:00:01", "mtu": 9000},
        {"id": "tap2", "type": "ovs", "ethernet_mac_address": "fa:16:3e:00:00:02"},
        {"id": "b0", "type": "bond", "bond_links": ["tap1", "tap2"], "bond_mode": "802.3ad",
         "bond_miimon": 100, "bond_xmit_hash_policy": "layer3+4",
         "ethernet_mac_address": "fa:16:3e:00:00:01"},
        {"id": "v1", "type": "vlan", "vlan_link": "b0", "vlan_id": 42,
         "vlan_mac_address": "fa:16:3e:00:00:01"}],
      "networks": [
        {"id": "n0", "link": "v1", "type": "ipv4", "ip_address": "10.0.0.5",
         "netmask": "255.255.255.0",
         "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.0.0.1"}],
         "dns_search": ["edge.example"]},
        {"id": "n1", "link": "v1", "type": "ipv6", "ip_address": "2001:db8::5",
         "netmask": "ffff:ffff:ffff:ffff::"},
        {"id": "n2", "link": "b0", "type": "ipv4_dhcp"}],
      "services": [{"type": "dns", "address": "10.0.0.2"}]})",
                                kMacs);
    REQUIRE(os);
    const auto& c = (*os)["config"];
    REQUIRE(c.size() == 5);
    CHECK(c[0] == nlohmann::json::parse(
                      R"({"name": "ens3", "type": "physical", "mac_address": "fa:16:3e:00:00:01",
                          "mtu": "9000"})"));
    CHECK(c[2]["name"] == "bond0");
    CHECK(c[2]["bond_interfaces"] == nlohmann::json::array({"ens3", "ens4"}));
    CHECK(c[2]["params"] == nlohmann::json::parse(
                                R"({"bond-mode": "802.3ad", "bond-miimon": "100",
                                    "bond-xmit-hash-policy": "layer3+4"})"));
    CHECK(c[3]["name"] == "bond0.42");
    CHECK(c[3]["accept-ra"] == false);
    CHECK(c[4] == nlohmann::json::parse(R"({"type": "nameserver", "address": ["10.0.0.2"]})"));
    auto plan = netplan_of(*os);
    CHECK_THAT(plan, Catch::Contains("bond0.42"));
    CHECK_THAT(plan, Catch::Contains("10.0.0.5/24"));
    CHECK_THAT(plan, Catch::Contains("2001:db8::5/64"));
    CHECK_THAT(plan, Catch::Contains("transmit-hash-policy"));
    CHECK_THAT(plan, Catch::Contains("10.0.0.2"));
    CHECK_THAT(plan, Catch::Contains("edge.example"));

    // DigitalOcean: the public NIC (gateway), the private one (none), the anchor address without
    // one, an empty anchor_ipv6 skipped; each named as the machine names it (no rename).
    auto d = digitalocean_network(R"({"interfaces": {
      "public": [{"mac": "04:01:58:27:7F:01", "type": "public",
                  "ipv4": {"ip_address": "45.55.50.93", "netmask": "255.255.224.0", "gateway": "45.55.32.1"},
                  "ipv6": {"ip_address": "2604:a880::1", "cidr": 64, "gateway": "2604:a880::ff"},
                  "anchor_ipv4": {"ip_address": "10.17.0.9", "netmask": "255.255.0.0", "gateway": "10.17.0.1"},
                  "anchor_ipv6": {}}],
      "private": [{"mac": "04:01:58:27:7f:02", "type": "private",
                   "ipv4": {"ip_address": "10.132.75.35", "netmask": "255.255.0.0", "gateway": "10.132.0.1"}}]},
      "dns": {"nameservers": ["67.207.67.2"]}})",
                                  kMacs);
    REQUIRE(d);
    const auto& dc = (*d)["config"];
    REQUIRE(dc.size() == 3);
    CHECK((dc[0]["name"] == "enp1s0" && dc[0]["mac_address"] == "04:01:58:27:7f:01"));
    CHECK(dc[0]["subnets"].size() == 3);
    CHECK(dc[0]["subnets"][0]["gateway"] == "45.55.32.1");
    CHECK(dc[0]["subnets"][1]["address"] == "2604:a880::1/64");
    CHECK_FALSE(dc[0]["subnets"][2].contains("gateway"));
    CHECK((dc[1]["name"] == "enp2s0" && !dc[1]["subnets"][0].contains("gateway")));
    plan = netplan_of(*d);
    CHECK_THAT(plan, Catch::Contains("set-name: \"enp1s0\""));
    CHECK_THAT(plan, Catch::Contains("45.55.50.93/19"));

    // Vultr: the first NIC public (DHCP, SLAAC), the others private (static), Vultr's resolvers.
    auto v = vultr_network(R"({"interfaces": [
      {"mac": "fa:16:3e:00:00:01", "network-type": "public",
       "ipv4": {"address": "45.76.1.2", "netmask": "255.255.254.0",
                "additional": [{"address": "45.76.9.9", "netmask": "255.255.255.255"}]},
       "ipv6": {"network": "2001:19f0::", "prefix": "64",
                "additional": [{"network": "2001:19f0:1::", "prefix": "64"}]}},
      {"mac": "fa:16:3e:00:00:02", "network-type": "private", "mtu": 1450,
       "ipv4": {"address": "10.1.96.3", "netmask": "255.255.240.0", "additional": []},
       "ipv6": {"additional": []}}]})",
                           kMacs);
    REQUIRE(v);
    const auto& vc = (*v)["config"];
    REQUIRE(vc.size() == 3);
    CHECK(vc[0]["type"] == "nameserver");
    CHECK((vc[1]["name"] == "ens3" && vc[1]["subnets"].size() == 4));
    CHECK(vc[1]["subnets"][3]["address"] == "2001:19f0:1::/64");
    CHECK((vc[2]["name"] == "ens4" && vc[2]["mtu"] == "1450"));
    plan = netplan_of(*v);
    CHECK_THAT(plan, Catch::Contains("10.1.96.3/20"));

    // Hetzner: its version 1 document as it is, plus DHCP on each private network's NIC.
    auto h = hetzner_network(R"(hostname: hz
network-config:
  config:
  - mac_address: 96:00:00:11:22:33
    name: eth0
    subnets:
    - dns_nameservers: [185.12.64.1]
      ipv4: true
      type: dhcp
    - address: 2a01:4f8:1c1c:1234::1/64
      gateway: fe80::1
      ipv6: true
      type: static
    type: physical
  version: 1
)",
                             "- ip: 10.0.0.2\n  mac_address: FA:16:3E:00:00:02\n", kMacs);
    REQUIRE(h);
    const auto& hc = (*h)["config"];
    REQUIRE(hc.size() == 2);
    CHECK(hc[0]["name"] == "enp7s0");  // Hetzner's eth0, as the machine names it
    CHECK(hc[1] == nlohmann::json::parse(R"({"type": "physical", "name": "ens4",
        "mac_address": "fa:16:3e:00:00:02", "subnets": [{"type": "dhcp"}]})"));
    plan = netplan_of(*h);
    CHECK_THAT(plan, Catch::Contains("2a01:4f8:1c1c:1234::1/64"));

    // Nothing described: no network config.
    CHECK(openstack_network(R"({"links": []})", kMacs)->is_null());
    CHECK(digitalocean_network(R"({"droplet_id": 1})", kMacs)->is_null());
    CHECK(vultr_network(R"({"interfaces": []})", kMacs)->is_null());
    CHECK(hetzner_network("hostname: x\n", "", kMacs)->is_null());
}

TEST_CASE("platform network config: what is refused, naming the field", "[datasource][network]") {
    auto bad = [](const Result<nlohmann::json>& r, const char* what) {
        REQUIRE_FALSE(r);
        CHECK_THAT(std::string(r.error().what()), Catch::Contains(what));
    };
    bad(openstack_network("{", kMacs), "network_data.json: not valid JSON");
    bad(openstack_network(R"({"links": {}})", kMacs), "links is not a list");
    bad(openstack_network(R"({"links": [{"type": "phy"}]})", kMacs), "links[0]: no id");
    bad(openstack_network(
            R"({"links": [{"id": "x", "type": "phy", "ethernet_mac_address": "00:00:00:00:00:09"}]})",
            kMacs),
        "links[0]: no network interface of this machine has MAC address 00:00:00:00:00:09");
    bad(openstack_network(
            R"({"links": [{"id": "v", "type": "vlan", "vlan_link": "nope", "vlan_id": 1}]})",
            kMacs),
        "vlan_link 'nope' is no link's id");
    bad(openstack_network(R"({"links": [{"id": "b", "type": "bond", "bond_links": ["zz"]}]})",
                          kMacs),
        "bond_links names no link's id");
    bad(openstack_network(R"({"links": [{"id": "t", "type": "phy", "name": "eth0"}],
        "networks": [{"link": "t", "type": "ipv5"}]})",
                          kMacs),
        "networks[0]: type 'ipv5'");
    bad(digitalocean_network(R"({"interfaces": {"public": [{"ipv4": {}}]}})", kMacs),
        "interfaces.public[0]: no mac");
    bad(digitalocean_network(
            R"({"interfaces": {"public": [{"mac": "fa:16:3e:00:00:01", "ipv4": {"netmask": "x"}}]}})",
            kMacs),
        "interfaces.public[0].ipv4: no ip_address");
    bad(digitalocean_network(R"({"interfaces": {"public": [{"mac": "00:00:00:00:00:09"}]}})",
                             kMacs),
        "no network interface of this machine has MAC address 00:00:00:00:00:09");
    // A bond parameter that is not a scalar (nesting a JSON parser takes without recursion).
    bad(openstack_network(R"({"links": [{"id": "b", "type": "bond", "bond_mode": [[["x"]]]}]})",
                          kMacs),
        "links[0]: bond_mode is not a string or number");
    bad(vultr_network(
            R"({"interfaces": [{"mac": "fa:16:3e:00:00:01"}, {"mac": "fa:16:3e:00:00:02"}]})",
            kMacs),
        "interfaces[1]: a private interface without ipv4");
    bad(hetzner_network("network-config: [1]\n", "", kMacs), "not a version 1 document");
    bad(hetzner_network("network-config: {version: 1, config: []}\n",
                        "- mac_address: 00:00:00:00:00:09\n", kMacs),
        "private-networks[0]: no network interface of this machine");
    std::string deep = "network-config: ";
    for (int i = 0; i < 40; ++i)
        deep += "[";
    bad(hetzner_network(deep + std::string(40, ']') + "\n", "", kMacs), "nested more than");
    // Aliases of aliases: a few lines standing for 10^8 values.
    std::string bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
    for (char c = 'b'; c <= 'h'; ++c)
        bomb += fmt::format("{}: &{} [*{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}]\n", c, c,
                            char(c - 1), char(c - 1), char(c - 1), char(c - 1), char(c - 1),
                            char(c - 1), char(c - 1), char(c - 1), char(c - 1), char(c - 1));
    bad(hetzner_network(bomb + "network-config: {version: 1, config: *h}\n", "", kMacs),
        "more than 10000 values");
    // One large value, repeated: bytes count too.
    const std::string big = "a: &a " + std::string(200000, 'x') +
                            "\nnetwork-config: {version: 1, config: [*a, *a, *a, *a, *a, *a]}\n";
    bad(hetzner_network(big, "", kMacs), "more than 1048576 bytes of values");
    bad(hetzner_network("network-config: {version: 1, config: [{type: physical, name: eth0, "
                        "mac_address: '00:00:00:00:00:09'}]}\n",
                        "", kMacs),
        "network-config.config[0]: no network interface of this machine has MAC address");
    // 65 links: more than a machine has.
    std::string many = R"({"links": [)";
    for (int i = 0; i < 65; ++i)
        many += std::string(i ? "," : "") + "{}";
    bad(openstack_network(many + "]}", kMacs), "more than 64 entries");
}
