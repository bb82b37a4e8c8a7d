#include "ballast/datasource/network.hpp"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "ballast/core/json.hpp"
#include "ballast/core/text.hpp"
#include "ballast/datasource/json_fields.hpp"

namespace ballast::datasource {
namespace {

using nlohmann::json;

// A machine has a few NICs; a document listing more is not describing one.
constexpr size_t kMaxItems = 64;
constexpr int kMaxNesting = 16;
// YAML aliases repeat what they point at: a few lines can stand for billions of nodes, or one
// large scalar for gigabytes. What a document may expand to: values, and bytes of scalars.
constexpr size_t kMaxNodes = 10000;
constexpr size_t kMaxBytes = 1u << 20;

struct Budget {
    size_t nodes = kMaxNodes, bytes = kMaxBytes;
};

// A list field: nullptr when absent or null; an error when not a list or too long.
Result<const json*> list_field(const json& j, std::string_view key, std::string_view what) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return nullptr;
    if (!it->is_array()) return fail(Errc::invalid_argument, "{}: {} is not a list", what, key);
    if (it->size() > kMaxItems)
        return fail(Errc::invalid_argument, "{}: {} has more than {} entries", what, key,
                    kMaxItems);
    return &*it;
}

// An object field: nullptr when absent or null; an error when not an object.
Result<const json*> object_field(const json& j, std::string_view key, std::string_view what) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return nullptr;
    if (!it->is_object()) return fail(Errc::invalid_argument, "{}: {} is not an object", what, key);
    return &*it;
}

Result<std::string> mac_field(const json& j, std::string_view key, std::string_view what) {
    auto mac = ascii_lower(BALLAST_TRY(str_field(j, key, what)));
    if (mac.empty()) return fail(Errc::invalid_argument, "{}: no {}", what, key);
    return mac;
}

// The machine's name for the NIC with `mac` (cloud-init refuses a config for a NIC that is not
// there, rather than name one).
Result<std::string> nic_name(const Macs& macs, const std::string& mac, std::string_view what) {
    auto it = macs.find(mac);
    if (it == macs.end())
        return fail(Errc::not_found, "{}: no network interface of this machine has MAC address {}",
                    what, mac);
    return it->second;
}

// A NIC as version 1 has it, named as the machine names it. (No BALLAST_TRY inside a braced
// initializer: GCC leaks the list's temporaries when a statement expression returns from it.)
Result<json> physical(const Macs& macs, const std::string& mac, std::string_view what) {
    auto name = BALLAST_TRY(nic_name(macs, mac, what));
    return json{{"type", "physical"}, {"name", std::move(name)}, {"mac_address", mac}};
}

// A static IPv4 subnet from an object's address and netmask.
Result<json> static_v4(const json& j, std::string_view what) {
    auto address = BALLAST_TRY(str_field(j, "address", what));
    auto netmask = BALLAST_TRY(str_field(j, "netmask", what));
    return json{
        {"type", "static"}, {"address", std::move(address)}, {"netmask", std::move(netmask)}};
}

// Strings of a list of strings (DNS servers).
Result<std::vector<std::string>> strings_field(const json& j, std::string_view key,
                                               std::string_view what) {
    std::vector<std::string> out;
    const json* list = BALLAST_TRY(list_field(j, key, what));
    if (!list) return out;
    for (const auto& v : *list) {
        if (!v.is_string())
            return fail(Errc::invalid_argument, "{}: {} holds something that is not a string", what,
                        key);
        out.push_back(v.get<std::string>());
    }
    return out;
}

// Routes as version 1 has them (network, netmask, gateway, metric), the platform's other keys
// left out.
Result<json> routes_of(const json& j, std::string_view what) {
    json out = json::array();
    const json* list = BALLAST_TRY(list_field(j, "routes", what));
    if (!list) return out;
    for (size_t i = 0; i < list->size(); ++i) {
        const auto where = fmt::format("{}: routes[{}]", what, i);
        if (!(*list)[i].is_object())
            return fail(Errc::invalid_argument, "{}: not an object", where);
        json r = json::object();
        for (const char* key : {"network", "destination", "netmask", "gateway", "metric"})
            if (auto v = BALLAST_TRY(str_field((*list)[i], key, where)); !v.empty()) r[key] = v;
        out.push_back(std::move(r));
    }
    return out;
}

json version1(json config) {
    if (config.empty()) return nullptr;
    return json{{"version", 1}, {"config", std::move(config)}};
}

// ---- OpenStack ----------------------------------------------------------------------------------

// One network of network_data.json as a subnet of its link's device (cloud-init's
// convert_net_json); `dev` takes accept-ra where the network's type implies it.
Result<json> openstack_subnet(const json& net, std::string_view where, json& dev) {
    const auto type = BALLAST_TRY(str_field(net, "type", where));
    json sub = json::object();
    if (type == "ipv4_dhcp") {
        sub["type"] = "dhcp4";
    } else if (type == "ipv6_dhcp" || type == "ipv6_dhcpv6-stateful") {
        sub["type"] = type == "ipv6_dhcp" ? "dhcp6" : type;
        dev["accept-ra"] = true;
    } else if (type == "ipv6_slaac" || type == "ipv6_dhcpv6-stateless") {
        sub["type"] = type;
    } else if (type == "ipv4" || type == "static" || type == "ipv6" || type == "static6") {
        const bool v6 = type == "ipv6" || type == "static6";
        sub["type"] = v6 ? "static6" : "static";
        if (v6) dev["accept-ra"] = false;
        sub["address"] = BALLAST_TRY(str_field(net, "ip_address", where));
        if (auto mask = BALLAST_TRY(str_field(net, "netmask", where)); !mask.empty())
            sub["netmask"] = mask;
        if (auto gw = BALLAST_TRY(str_field(net, "gateway", where)); !gw.empty())
            sub["gateway"] = gw;
    } else {
        return fail(Errc::invalid_argument,
                    "{}: type '{}' (ipv4, ipv4_dhcp, ipv6, ipv6_dhcp, ipv6_slaac, "
                    "ipv6_dhcpv6-stateless, ipv6_dhcpv6-stateful)",
                    where, type);
    }
    if (auto routes = BALLAST_TRY(routes_of(net, where)); !routes.empty()) sub["routes"] = routes;
    if (auto search = BALLAST_TRY(strings_field(net, "dns_search", where)); !search.empty())
        sub["dns_search"] = search;
    // Name servers: the network's own, its DNS services, and those its routes carry.
    std::vector<std::string> dns = BALLAST_TRY(strings_field(net, "dns_nameservers", where));
    auto add_dns = [&](const json& holder, std::string_view at) -> Status {
        const json* services = BALLAST_TRY(list_field(holder, "services", at));
        if (!services) return {};
        for (const auto& s : *services) {
            if (!s.is_object() || BALLAST_TRY(str_field(s, "type", at)) != "dns") continue;
            auto a = BALLAST_TRY(str_field(s, "address", at));
            if (!a.empty() && std::find(dns.begin(), dns.end(), a) == dns.end()) dns.push_back(a);
        }
        return {};
    };
    if (const json* routes = BALLAST_TRY(list_field(net, "routes", where)))
        for (const auto& r : *routes)
            if (r.is_object()) BALLAST_TRY(add_dns(r, where));
    BALLAST_TRY(add_dns(net, where));
    if (!dns.empty()) sub["dns_nameservers"] = dns;
    return sub;
}

}  // namespace

Macs read_macs(const RootPrefix& root) {
    Macs out;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(root("/sys/class/net"), ec)) {
        std::error_code ec2;
        if (!std::filesystem::exists(e.path() / "device", ec2)) continue;  // lo, bonds, VLANs
        // A bond's members all show the bond's address; their own is the permanent one.
        std::ifstream f(std::filesystem::exists(e.path() / "bonding_slave/perm_hwaddr", ec2)
                            ? e.path() / "bonding_slave/perm_hwaddr"
                            : e.path() / "address");
        std::string mac;
        std::getline(f, mac);
        mac = ascii_lower(std::string(trim(mac)));
        if (!mac.empty()) out.emplace(mac, e.path().filename().string());
    }
    return out;
}

Result<json> openstack_network(std::string_view text, const Macs& macs) {
    constexpr std::string_view doc = "network_data.json";
    auto j = BALLAST_TRY(parse_json(text, doc));
    const json* links = BALLAST_TRY(list_field(j, "links", doc));
    const json* networks = BALLAST_TRY(list_field(j, "networks", doc));
    const json* services = BALLAST_TRY(list_field(j, "services", doc));
    if (!links) return json(nullptr);
    // Every link's device name first: bonds and VLANs name other links by id, in any order.
    std::map<std::string, std::string> names;
    size_t bonds = 0;
    for (int pass = 0; pass < 2; ++pass) {
        for (size_t i = 0; i < links->size(); ++i) {
            const auto where = fmt::format("{}: links[{}]", doc, i);
            const json& link = (*links)[i];
            if (!link.is_object()) return fail(Errc::invalid_argument, "{}: not an object", where);
            const auto id = BALLAST_TRY(str_field(link, "id", where));
            if (id.empty()) return fail(Errc::invalid_argument, "{}: no id", where);
            const auto type = BALLAST_TRY(str_field(link, "type", where));
            auto name = BALLAST_TRY(str_field(link, "name", where));
            if ((type == "vlan") != (pass == 1)) continue;
            if (type == "vlan") {
                const auto parent = BALLAST_TRY(str_field(link, "vlan_link", where));
                auto it = names.find(parent);
                if (it == names.end())
                    return fail(Errc::invalid_argument, "{}: vlan_link '{}' is no link's id", where,
                                parent);
                const auto vlan_id = BALLAST_TRY(str_field(link, "vlan_id", where));
                name = it->second + "." + vlan_id;
            } else if (type == "bond") {
                if (name.empty()) name = fmt::format("bond{}", bonds);
                ++bonds;
            } else if (name.empty()) {
                const auto mac = BALLAST_TRY(mac_field(link, "ethernet_mac_address", where));
                name = BALLAST_TRY(nic_name(macs, mac, where));
            }
            if (!names.emplace(id, name).second)
                return fail(Errc::invalid_argument, "{}: id '{}' is used twice", where, id);
        }
    }
    json config = json::array();
    for (size_t i = 0; i < links->size(); ++i) {
        const auto where = fmt::format("{}: links[{}]", doc, i);
        const json& link = (*links)[i];
        const auto id = BALLAST_TRY(str_field(link, "id", where));
        const auto type = BALLAST_TRY(str_field(link, "type", where));
        const auto mac = ascii_lower(BALLAST_TRY(str_field(link, "ethernet_mac_address", where)));
        json dev{{"name", names[id]}};
        if (type == "bond") {
            dev["type"] = "bond";
            json members = json::array();
            const json* bond_links = BALLAST_TRY(list_field(link, "bond_links", where));
            for (const auto& m : bond_links ? *bond_links : json::array()) {
                auto it = m.is_string() ? names.find(m.get<std::string>()) : names.end();
                if (it == names.end())
                    return fail(Errc::invalid_argument, "{}: bond_links names no link's id", where);
                members.push_back(it->second);
            }
            dev["bond_interfaces"] = members;
            json params = json::object();
            for (const auto& [key, value] : link.items()) {
                if (!key.starts_with("bond_") || key == "bond_links") continue;
                std::string v1 = "bond-" + key.substr(5);
                std::replace(v1.begin(), v1.end(), '_', '-');
                if (value.is_string())
                    params[v1] = value.get<std::string>();
                else if (value.is_number() || value.is_boolean())
                    params[v1] = value.dump();  // a scalar: no nesting to walk
                else
                    return fail(Errc::invalid_argument, "{}: {} is not a string or number", where,
                                key);
            }
            if (!params.empty()) dev["params"] = params;
            if (!mac.empty()) dev["mac_address"] = mac;
        } else if (type == "vlan") {
            dev["type"] = "vlan";
            dev["vlan_link"] = names[BALLAST_TRY(str_field(link, "vlan_link", where))];
            dev["vlan_id"] = BALLAST_TRY(str_field(link, "vlan_id", where));
        } else {
            dev["type"] = "physical";  // phy, ovs, tap, vif, bridge, ...: the NIC the guest sees
            if (!mac.empty()) dev["mac_address"] = mac;
        }
        if (auto mtu = BALLAST_TRY(str_field(link, "mtu", where)); !mtu.empty()) dev["mtu"] = mtu;
        json subnets = json::array();
        for (size_t k = 0; networks && k < networks->size(); ++k) {
            const auto at = fmt::format("{}: networks[{}]", doc, k);
            const json& net = (*networks)[k];
            if (!net.is_object()) return fail(Errc::invalid_argument, "{}: not an object", at);
            if (BALLAST_TRY(str_field(net, "link", at)) != id) continue;
            subnets.push_back(BALLAST_TRY(openstack_subnet(net, at, dev)));
        }
        if (!subnets.empty()) dev["subnets"] = std::move(subnets);
        config.push_back(std::move(dev));
    }
    std::vector<std::string> dns;
    for (size_t i = 0; services && i < services->size(); ++i) {
        const auto where = fmt::format("{}: services[{}]", doc, i);
        const json& s = (*services)[i];
        if (!s.is_object() || BALLAST_TRY(str_field(s, "type", where)) != "dns") continue;
        if (auto a = BALLAST_TRY(str_field(s, "address", where)); !a.empty()) dns.push_back(a);
    }
    if (!dns.empty()) config.push_back({{"type", "nameserver"}, {"address", dns}});
    return version1(std::move(config));
}

// ---- DigitalOcean -------------------------------------------------------------------------------

Result<json> digitalocean_network(std::string_view text, const Macs& macs) {
    constexpr std::string_view doc = "metadata/v1.json";
    auto j = BALLAST_TRY(parse_json(text, doc));
    const json* ifaces = BALLAST_TRY(object_field(j, "interfaces", doc));
    if (!ifaces) return json(nullptr);
    json config = json::array();
    for (const char* kind : {"public", "private"}) {
        const auto where = fmt::format("{}: interfaces.{}[0]", doc, kind);
        const json* list = BALLAST_TRY(list_field(*ifaces, kind, doc));
        if (!list || list->empty()) continue;
        const json& nic = list->front();
        if (!nic.is_object()) return fail(Errc::invalid_argument, "{}: not an object", where);
        const auto mac = BALLAST_TRY(mac_field(nic, "mac", where));
        json dev = BALLAST_TRY(physical(macs, mac, where));
        json subnets = json::array();
        for (const char* def : {"ipv4", "ipv6", "anchor_ipv4", "anchor_ipv6"}) {
            const auto at = fmt::format("{}.{}", where, def);
            const json* raw = BALLAST_TRY(object_field(nic, def, where));
            if (!raw || raw->empty()) continue;
            const auto ip = BALLAST_TRY(str_field(*raw, "ip_address", at));
            if (ip.empty()) return fail(Errc::invalid_argument, "{}: no ip_address", at);
            json sub{{"type", "static"}};
            if (ip.find(':') != std::string::npos) {
                const auto cidr = BALLAST_TRY(str_field(*raw, "cidr", at));
                sub["address"] = ip + "/" + cidr;
            } else {
                sub["address"] = ip;
                sub["netmask"] = BALLAST_TRY(str_field(*raw, "netmask", at));
            }
            // The gateway on the public NIC's own addresses only (not the anchor address).
            auto gw = BALLAST_TRY(str_field(*raw, "gateway", at));
            if (std::string_view(kind) == "public" &&
                !std::string_view(def).starts_with("anchor") && !gw.empty())
                sub["gateway"] = gw;
            subnets.push_back(std::move(sub));
        }
        dev["subnets"] = std::move(subnets);
        config.push_back(std::move(dev));
    }
    if (config.empty()) return json(nullptr);
    if (const json* dns = BALLAST_TRY(object_field(j, "dns", doc)))
        if (auto ns = BALLAST_TRY(strings_field(*dns, "nameservers", doc)); !ns.empty())
            config.push_back({{"type", "nameserver"}, {"address", ns}});
    return version1(std::move(config));
}

// ---- Vultr --------------------------------------------------------------------------------------

Result<json> vultr_network(std::string_view text, const Macs& macs) {
    constexpr std::string_view doc = "v1.json";
    auto j = BALLAST_TRY(parse_json(text, doc));
    const json* ifaces = BALLAST_TRY(list_field(j, "interfaces", doc));
    if (!ifaces || ifaces->empty()) return json(nullptr);
    // Vultr's resolvers, as cloud-init sets them for every Vultr instance.
    json resolvers = json::object();
    resolvers["type"] = "nameserver";
    resolvers["address"] = json::array({"108.61.10.10", "2001:19f0:300:1704::6"});
    json config = json::array();
    config.push_back(std::move(resolvers));
    for (size_t i = 0; i < ifaces->size(); ++i) {
        const auto where = fmt::format("{}: interfaces[{}]", doc, i);
        const json& nic = (*ifaces)[i];
        if (!nic.is_object()) return fail(Errc::invalid_argument, "{}: not an object", where);
        if (i > 0 && json_field<bool>(nic, "unconfigured", false)) continue;
        const auto mac = BALLAST_TRY(mac_field(nic, "mac", where));
        json dev = BALLAST_TRY(physical(macs, mac, where));
        const json* v4 = BALLAST_TRY(object_field(nic, "ipv4", where));
        const json* v6 = BALLAST_TRY(object_field(nic, "ipv6", where));
        json subnets = json::array();
        if (i == 0) {  // public: the platform's DHCP and router advertisements
            dev["accept-ra"] = true;
            subnets.push_back({{"type", "dhcp"}});
            subnets.push_back({{"type", "ipv6_slaac"}});
        } else {
            const auto at = where + ".ipv4";
            if (!v4)
                return fail(Errc::invalid_argument, "{}: a private interface without ipv4", where);
            subnets.push_back(BALLAST_TRY(static_v4(*v4, at)));
        }
        if (auto mtu = BALLAST_TRY(str_field(nic, "mtu", where)); !mtu.empty()) dev["mtu"] = mtu;
        if (auto it = nic.find("accept-ra"); it != nic.end() && it->is_boolean())
            dev["accept-ra"] = it->get<bool>();
        if (auto routes = BALLAST_TRY(routes_of(nic, where)); !routes.empty())
            subnets[0]["routes"] = routes;
        // Additional addresses: IPv4 with their netmask, IPv6 as network/prefix.
        for (const auto& [fam, obj] : {std::pair{"ipv4", v4}, std::pair{"ipv6", v6}}) {
            if (!obj) continue;
            const auto at = fmt::format("{}.{}", where, fam);
            const json* extra = BALLAST_TRY(list_field(*obj, "additional", at));
            for (size_t k = 0; extra && k < extra->size(); ++k) {
                const auto a = fmt::format("{}.additional[{}]", at, k);
                const json& x = (*extra)[k];
                if (!x.is_object()) return fail(Errc::invalid_argument, "{}: not an object", a);
                json sub;
                if (std::string_view(fam) == "ipv4") {
                    sub = BALLAST_TRY(static_v4(x, a));
                } else {
                    const auto network = BALLAST_TRY(str_field(x, "network", a));
                    const auto prefix = BALLAST_TRY(str_field(x, "prefix", a));
                    sub = json{{"type", "static6"}, {"address", network + "/" + prefix}};
                }
                if (auto routes = BALLAST_TRY(routes_of(x, a)); !routes.empty())
                    sub["routes"] = routes;
                subnets.push_back(std::move(sub));
            }
        }
        dev["subnets"] = std::move(subnets);
        config.push_back(std::move(dev));
    }
    return version1(std::move(config));
}

// ---- Hetzner ------------------------------------------------------------------------------------

namespace {

// A YAML node as JSON, every scalar a string (the version 1 reader reads scalars as text).
Result<json> yaml_json(const YAML::Node& n, Budget& budget, int depth = 0) {
    if (depth > kMaxNesting)
        return fail(Errc::invalid_argument, "nested more than {} levels", kMaxNesting);
    if (budget.nodes == 0) return fail(Errc::invalid_argument, "more than {} values", kMaxNodes);
    --budget.nodes;
    if (!n || n.IsNull()) return json(nullptr);
    if (n.IsScalar()) {
        if (n.Scalar().size() > budget.bytes)
            return fail(Errc::invalid_argument, "more than {} bytes of values", kMaxBytes);
        budget.bytes -= n.Scalar().size();
        return json(n.Scalar());
    }
    json out = n.IsSequence() ? json::array() : json::object();
    for (const auto& item : n) {
        if (n.IsSequence()) {
            out.push_back(BALLAST_TRY(yaml_json(item, budget, depth + 1)));
        } else {
            if (!item.first.IsScalar())
                return fail(Errc::invalid_argument, "a key that is not a string");
            out[item.first.Scalar()] = BALLAST_TRY(yaml_json(item.second, budget, depth + 1));
        }
    }
    return out;
}

Result<YAML::Node> load_yaml(std::string_view text, std::string_view what) {
    try {
        return YAML::Load(std::string(text));
    } catch (const YAML::Exception& e) {
        return fail(Errc::invalid_argument, "{}: not valid YAML: {}", what, e.what());
    }
}

}  // namespace

Result<json> hetzner_network(std::string_view metadata, std::string_view private_networks,
                             const Macs& macs) {
    auto y = BALLAST_TRY(load_yaml(metadata, "hetzner metadata"));
    if (!y.IsMap()) return fail(Errc::invalid_argument, "hetzner metadata: not a mapping");
    Budget budget;
    auto net =
        BALLAST_TRY_CTX(yaml_json(y["network-config"], budget), "hetzner metadata: network-config");
    if (net.is_null()) return net;
    const json* config =
        net.is_object() ? BALLAST_TRY(list_field(net, "config", "network-config")) : nullptr;
    if (!config || BALLAST_TRY(str_field(net, "version", "network-config")) != "1")
        return fail(Errc::invalid_argument,
                    "hetzner metadata: network-config is not a version 1 document with a config "
                    "list");
    json out = net;
    // Each NIC named as the machine names its MAC address (Hetzner says eth0): with another name
    // netplan's set-name would match the NIC only after a rename at the next boot.
    for (size_t i = 0; i < out["config"].size(); ++i) {
        auto& dev = out["config"][i];
        if (json_field<std::string>(dev, "type", "") != "physical") continue;
        const auto where = fmt::format("hetzner metadata: network-config.config[{}]", i);
        const auto mac = BALLAST_TRY(mac_field(dev, "mac_address", where));
        auto name = BALLAST_TRY(nic_name(macs, mac, where));
        dev["name"] = std::move(name);
    }
    if (!trim(private_networks).empty()) {
        constexpr std::string_view what = "hetzner metadata/private-networks";
        auto p = BALLAST_TRY(load_yaml(private_networks, what));
        if (!p.IsSequence()) return fail(Errc::invalid_argument, "{}: not a list", what);
        if (p.size() > kMaxItems)
            return fail(Errc::invalid_argument, "{}: more than {} entries", what, kMaxItems);
        for (size_t i = 0; i < p.size(); ++i) {
            const auto where = fmt::format("{}[{}]", what, i);
            auto entry = BALLAST_TRY_CTX(yaml_json(p[i], budget), "{}", where);
            if (!entry.is_object()) return fail(Errc::invalid_argument, "{}: not a mapping", where);
            const auto mac = BALLAST_TRY(mac_field(entry, "mac_address", where));
            json dev = BALLAST_TRY(physical(macs, mac, where));
            dev["subnets"] = json::array({{{"type", "dhcp"}}});
            out["config"].push_back(std::move(dev));
        }
    }
    return out;
}

}  // namespace ballast::datasource
