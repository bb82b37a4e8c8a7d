#include "ballast/config/network.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <optional>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "ballast/core/suggest.hpp"
#include "ballast/core/text.hpp"

namespace ballast::config {
namespace {

using nlohmann::json;

constexpr std::string_view kV2Keys[] = {
    "version",           "renderer", "ethernets", "vlans", "bonds",
    "bridges",           "wifis",    "tunnels",   "vrfs",  "dummy-devices",
    "virtual-ethernets", "modems"};

std::string hint(std::string_view word, std::span<const std::string_view> known) {
    std::vector<std::string_view> k(known.begin(), known.end());
    auto m = closest_match(word, k);
    return m ? fmt::format(" (did you mean '{}'?)", *m) : "";
}

// The converter's reading of one v1 mapping: typed values, errors with positions.
class V1Reader {
  public:
    V1Reader(const Node& n, std::string where, Diagnostics& d)
        : n_(n), where_(std::move(where)), d_(d) {}

    std::optional<std::string> str(std::string_view key, bool required = false) const {
        const Node* v = n_.find(key);
        if (!v || v->is_null()) {
            if (required) d_.error(n_.pos, fmt::format("{}: no {}", where_, key));
            return std::nullopt;
        }
        if (!v->is_scalar()) {
            d_.error(v->pos, fmt::format("{}.{}: expected a string", where_, key));
            return std::nullopt;
        }
        return v->scalar;
    }
    std::optional<uint64_t> num(std::string_view key, bool required = false) const {
        auto s = str(key, required);
        if (!s) return std::nullopt;
        auto v = parse_unsigned<uint64_t>(*s);
        if (!v) d_.error(n_.find(key)->pos, fmt::format("{}.{}: expected a number", where_, key));
        return v;
    }
    // A string or a list of strings (cloud-init accepts both for addresses, search domains).
    std::vector<std::string> strings(std::string_view key) const {
        std::vector<std::string> out;
        const Node* v = n_.find(key);
        if (!v || v->is_null()) return out;
        if (v->is_scalar()) {
            // "1.1.1.1 8.8.8.8" as ifupdown writes it.
            std::string_view s = v->scalar;
            size_t pos = 0;
            while (pos < s.size()) {
                auto b = s.find_first_not_of(" ,", pos);
                if (b == std::string_view::npos) break;
                auto e = s.find_first_of(" ,", b);
                out.emplace_back(s.substr(b, e == std::string_view::npos ? s.npos : e - b));
                pos = e == std::string_view::npos ? s.size() : e;
            }
            return out;
        }
        if (!v->is_sequence()) {
            d_.error(v->pos, fmt::format("{}.{}: expected a string or a list", where_, key));
            return out;
        }
        for (const auto& i : v->items) {
            if (!i.is_scalar())
                d_.error(i.pos, fmt::format("{}.{}: expected strings", where_, key));
            else
                out.push_back(i.scalar);
        }
        return out;
    }
    void only(std::span<const std::string_view> keys) const {
        for (const auto& e : n_.entries)
            if (std::find(keys.begin(), keys.end(), e.key) == keys.end())
                d_.error(e.key_pos,
                         fmt::format("{}: unknown key '{}'{}", where_, e.key, hint(e.key, keys)));
    }
    const Node& node() const { return n_; }
    const std::string& where() const { return where_; }
    Diagnostics& diags() const { return d_; }

  private:
    const Node& n_;
    std::string where_;
    Diagnostics& d_;
};

// "255.255.255.0" -> 24, "ffff:ffff:ffff:ffff::" -> 64 (OpenStack gives IPv6 netmasks so).
std::optional<int> netmask_prefix(std::string_view mask) {
    unsigned char b[16] = {};
    const bool v6 = mask.find(':') != std::string_view::npos;
    if (inet_pton(v6 ? AF_INET6 : AF_INET, std::string(mask).c_str(), b) != 1) return std::nullopt;
    int ones = 0;
    bool ended = false;
    for (size_t i = 0; i < (v6 ? 16u : 4u); ++i) {
        for (int bit = 7; bit >= 0; --bit) {
            const bool set = (b[i] >> bit) & 1;
            if (set && ended) return std::nullopt;  // contiguous: the ones all at the top
            if (set) ++ones;
            ended = ended || !set;
        }
    }
    return ones;
}

// cloud-init's util.is_true: a flag given as YAML or as a platform's JSON.
bool is_true(std::string_view v) {
    for (std::string_view t : {"true", "yes", "on", "1", "True", "Yes", "On", "TRUE", "YES", "ON"})
        if (v == t) return true;
    return false;
}

bool is_ipv6(std::string_view addr) {
    return addr.find(':') != std::string_view::npos;
}

bool valid_ip(std::string_view addr) {
    unsigned char buf[16];
    return inet_pton(is_ipv6(addr) ? AF_INET6 : AF_INET, std::string(addr).c_str(), buf) == 1;
}

// "10.0.0.5/24", or address + netmask/prefix: the CIDR form netplan takes.
std::optional<std::string> cidr(const V1Reader& r, std::string_view addr_key) {
    auto addr = r.str(addr_key);
    if (!addr) return std::nullopt;
    std::string a = *addr, prefix;
    if (auto slash = a.find('/'); slash != std::string::npos) {
        prefix = a.substr(slash + 1);
        a.resize(slash);
    } else if (auto mask = r.str("netmask")) {
        if (auto p = is_ipv6(*mask) != is_ipv6(a) ? std::nullopt : netmask_prefix(*mask))
            prefix = std::to_string(*p);
        else if (parse_unsigned<unsigned>(*mask))
            prefix = *mask;
        else {
            r.diags().error(r.node().find("netmask")->pos,
                            fmt::format("{}.netmask: '{}' is not a netmask", r.where(), *mask));
            return std::nullopt;
        }
    } else if (auto p = r.str("prefix")) {
        prefix = *p;
    } else {
        prefix = is_ipv6(a) ? "64" : "24";  // cloud-init's defaults
    }
    auto bits = parse_unsigned<unsigned>(prefix);
    if (!valid_ip(a) || !bits || *bits > (is_ipv6(a) ? 128u : 32u)) {
        r.diags().error(
            r.node().find(addr_key)->pos,
            fmt::format("{}.{}: '{}/{}' is not an address", r.where(), addr_key, a, prefix));
        return std::nullopt;
    }
    return a + "/" + prefix;
}

// Is `ip` inside `cidr_text` (both IPv4 or both IPv6)?
bool contains(std::string_view cidr_text, std::string_view ip) {
    auto slash = cidr_text.find('/');
    if (slash == std::string_view::npos || is_ipv6(ip) != is_ipv6(cidr_text)) return false;
    const int family = is_ipv6(ip) ? AF_INET6 : AF_INET;
    unsigned char net[16] = {}, a[16] = {};
    if (inet_pton(family, std::string(cidr_text.substr(0, slash)).c_str(), net) != 1 ||
        inet_pton(family, std::string(ip).c_str(), a) != 1)
        return false;
    auto bits = parse_unsigned<unsigned>(cidr_text.substr(slash + 1));
    if (!bits || *bits > (family == AF_INET6 ? 128u : 32u)) return false;
    for (unsigned i = 0; i < *bits; ++i) {
        const unsigned char m = static_cast<unsigned char>(0x80u >> (i % 8));
        if ((net[i / 8] & m) != (a[i / 8] & m)) return false;
    }
    return true;
}

json route(const V1Reader& r) {
    constexpr std::string_view keys[] = {"network", "destination", "netmask", "prefix",
                                         "gateway", "metric",      "type",    "interface"};
    r.only(keys);
    json out;
    const char* key = r.node().find("destination") ? "destination" : "network";
    if (!r.node().find(key)) {
        r.diags().error(r.node().pos, r.where() + ": no destination (or network)");
        return out;
    }
    // Without a netmask or prefix: /24 or /64, as cloud-init normalises routes (not a host route).
    auto to = cidr(r, key);
    if (!to) return out;
    out["to"] = *to == "0.0.0.0/0" || *to == "::/0" ? "default" : *to;
    if (auto gw = r.str("gateway", true)) out["via"] = *gw;
    if (auto m = r.num("metric")) out["metric"] = *m;
    return out;
}

// A device's subnets: DHCP, static addresses, gateways, its DNS and routes.
void subnets(const V1Reader& dev, json& out, Diagnostics& d) {
    const Node* subs = dev.node().find("subnets");
    if (!subs || subs->is_null()) return;
    if (!subs->is_sequence()) {
        d.error(subs->pos, dev.where() + ".subnets: expected a list");
        return;
    }
    for (size_t i = 0; i < subs->items.size(); ++i) {
        const Node& s = subs->items[i];
        V1Reader r(s, fmt::format("{}.subnets[{}]", dev.where(), i), d);
        if (!s.is_mapping()) {
            d.error(s.pos, r.where() + ": expected a mapping");
            continue;
        }
        // ipv4/ipv6: flags platforms add (Hetzner, cloud-init's OpenStack conversion); the type
        // and address say the same.
        constexpr std::string_view keys[] = {
            "type",       "address", "netmask", "prefix", "gateway", "dns_nameservers",
            "dns_search", "routes",  "control", "mtu",    "metric",  "ipv4",
            "ipv6"};
        r.only(keys);
        auto type = r.str("type", true);
        if (!type) continue;
        if (*type == "dhcp" || *type == "dhcp4") {
            out["dhcp4"] = true;
        } else if (*type == "dhcp6" || *type == "ipv6_dhcpv6-stateful" ||
                   *type == "ipv6_dhcpv6-stateless") {
            out["dhcp6"] = true;
        } else if (*type == "ipv6_slaac") {
            out["accept-ra"] = true;
        } else if (*type == "static" || *type == "static6") {
            auto a = cidr(r, "address");
            if (!a) {
                if (!s.find("address"))
                    d.error(s.pos, r.where() + ": a static subnet needs an address");
                continue;
            }
            out["addresses"].push_back(*a);
            if (auto gw = r.str("gateway"))
                out["routes"].push_back({{"to", "default"}, {"via", *gw}});
        } else if (*type != "manual") {
            d.error(s.find("type")->pos,
                    fmt::format("{}.type: '{}' (dhcp, dhcp4, dhcp6, static, static6, manual, "
                                "ipv6_slaac, ipv6_dhcpv6-stateful, ipv6_dhcpv6-stateless)",
                                r.where(), *type));
            continue;
        }
        if (auto mtu = r.num("mtu"))
            out[is_ipv6(r.str("address").value_or("")) ? "ipv6-mtu" : "mtu"] = *mtu;
        for (const char* ignored : {"control", "metric"})
            if (const Node* v = s.find(ignored))
                d.warning(v->pos, fmt::format("{}.{}: not converted (netplan has no such setting); "
                                              "ignored",
                                              r.where(), ignored));
        for (const auto& a : r.strings("dns_nameservers"))
            out["nameservers"]["addresses"].push_back(a);
        for (const auto& a : r.strings("dns_search"))
            out["nameservers"]["search"].push_back(a);
        if (const Node* routes = s.find("routes"); routes && routes->is_sequence())
            for (size_t k = 0; k < routes->items.size(); ++k)
                out["routes"].push_back(route(
                    V1Reader(routes->items[k], fmt::format("{}.routes[{}]", r.where(), k), d)));
    }
}

// cloud-init's bond-* and bridge_* parameters, as netplan names them.
struct Param {
    std::string_view v1, v2;
    bool number;
};
constexpr Param kBondParams[] = {
    {"bond-mode", "mode", false},
    {"bond-miimon", "mii-monitor-interval", true},
    {"bond-lacp-rate", "lacp-rate", false},
    {"bond-xmit-hash-policy", "transmit-hash-policy", false},
    {"bond-primary", "primary", false},
    {"bond-updelay", "up-delay", true},
    {"bond-downdelay", "down-delay", true},
    {"bond-ad-select", "ad-select", false},
    {"bond-min-links", "min-links", true},
};
constexpr Param kBridgeParams[] = {
    {"bridge_stp", "stp", false},           {"bridge_fd", "forward-delay", true},
    {"bridge_hello", "hello-time", true},   {"bridge_maxage", "max-age", true},
    {"bridge_ageing", "ageing-time", true}, {"bridge_bridgeprio", "priority", true},
};

json parameters(const V1Reader& dev, std::string_view key, std::span<const Param> table) {
    json out = json::object();
    const Node* p = dev.node().find(key);
    if (!p || p->is_null()) return out;
    if (!p->is_mapping()) {
        dev.diags().error(p->pos, fmt::format("{}.{}: expected a mapping", dev.where(), key));
        return out;
    }
    for (const auto& e : p->entries) {
        auto it =
            std::find_if(table.begin(), table.end(), [&](const Param& x) { return x.v1 == e.key; });
        if (it == table.end() || !e.value.is_scalar()) {
            std::vector<std::string_view> names;
            for (const auto& x : table)
                names.push_back(x.v1);
            dev.diags().error(e.key_pos, fmt::format("{}.{}: '{}' is not converted{}", dev.where(),
                                                     key, e.key, hint(e.key, names)));
            continue;
        }
        const std::string& v = e.value.scalar;
        if (it->number) {
            auto n = parse_unsigned<uint64_t>(v);
            if (!n) {
                dev.diags().error(e.value.pos, fmt::format("{}.{}.{}: expected a number",
                                                           dev.where(), key, e.key));
                continue;
            }
            out[std::string(it->v2)] = *n;
        } else if (it->v2 == "stp") {
            out["stp"] = v == "on" || v == "true" || v == "yes" || v == "1";
        } else {
            out[std::string(it->v2)] = v;
        }
    }
    return out;
}

}  // namespace

json network_v1_to_v2(const Node& config, Diagnostics& d) {
    json net = {{"version", 2}};
    std::vector<std::string> dns, search;
    struct Global {
        json route;
        Position pos;
        std::string iface;  // `interface:` names the device
    };
    std::vector<Global> routes;
    struct Dns {
        std::vector<std::string> addresses, search;
        std::string iface;
    };
    std::vector<Dns> scoped_dns;
    std::vector<json*> with_subnets;
    for (size_t i = 0; i < config.items.size(); ++i) {
        const Node& item = config.items[i];
        V1Reader r(item, fmt::format("network.config[{}]", i), d);
        if (!item.is_mapping()) {
            d.error(item.pos, r.where() + ": expected a mapping");
            continue;
        }
        auto type = r.str("type", true);
        if (!type) continue;
        if (*type == "nameserver") {
            constexpr std::string_view keys[] = {"type", "address", "search", "interface"};
            r.only(keys);
            if (auto iface = r.str("interface")) {
                scoped_dns.push_back({r.strings("address"), r.strings("search"), *iface});
                continue;
            }
            for (auto& a : r.strings("address"))
                dns.push_back(a);
            for (auto& s : r.strings("search"))
                search.push_back(s);
            continue;
        }
        if (*type == "route") {
            routes.push_back({route(r), item.pos, r.str("interface").value_or("")});
            continue;
        }
        auto name = r.str("name", true);
        if (!name) continue;
        json dev = json::object();
        std::string kind;
        if (*type == "physical") {
            constexpr std::string_view keys[] = {"type",    "name",      "mac_address", "mtu",
                                                 "subnets", "accept-ra", "wakeonlan"};
            r.only(keys);
            kind = "ethernets";
            if (auto v = r.str("wakeonlan")) dev["wakeonlan"] = is_true(*v);
            if (auto mac = r.str("mac_address")) {
                dev["match"] = {{"macaddress", ascii_lower(*mac)}};
                dev["set-name"] = *name;
            }
        } else if (*type == "vlan") {
            constexpr std::string_view keys[] = {"type", "name",    "vlan_link", "vlan_id",
                                                 "mtu",  "subnets", "accept-ra"};
            r.only(keys);
            kind = "vlans";
            if (auto id = r.num("vlan_id", true)) dev["id"] = *id;
            if (auto link = r.str("vlan_link", true)) dev["link"] = *link;
        } else if (*type == "bond" || *type == "bridge") {
            const bool bond = *type == "bond";
            const std::string members = *type + "_interfaces";
            const std::string_view keys[] = {"type",        "name", members,   "params",
                                             "mac_address", "mtu",  "subnets", "accept-ra"};
            r.only(keys);
            kind = bond ? "bonds" : "bridges";
            dev["interfaces"] = r.strings(members);
            if (auto p = parameters(r, "params",
                                    bond ? std::span<const Param>(kBondParams) : kBridgeParams);
                !p.empty())
                dev["parameters"] = p;
            if (auto mac = r.str("mac_address")) dev["macaddress"] = *mac;
        } else {
            d.error(item.find("type")->pos,
                    fmt::format("{}.type: '{}' (physical, vlan, bond, bridge, nameserver or route)",
                                r.where(), *type));
            continue;
        }
        if (auto mtu = r.num("mtu")) dev["mtu"] = *mtu;
        if (auto v = r.str("accept-ra")) dev["accept-ra"] = is_true(*v);
        subnets(r, dev, d);
        json& slot = net[kind][*name];
        if (!slot.is_null())
            d.error(item.pos, fmt::format("{}: '{}' is defined twice", r.where(), *name));
        slot = std::move(dev);
    }
    // Global name servers go to every device that has an address or DHCP (netplan has no global
    // DNS); global routes to the device whose static address holds the gateway.
    for (const char* kind : {"ethernets", "vlans", "bonds", "bridges"}) {
        if (!net.contains(kind)) continue;
        for (auto& [name, dev] : net[kind].items()) {
            const bool configured =
                dev.contains("addresses") || dev.contains("dhcp4") || dev.contains("dhcp6");
            if (configured && !dns.empty())
                for (const auto& a : dns)
                    dev["nameservers"]["addresses"].push_back(a);
            if (configured && !search.empty())
                for (const auto& s : search)
                    dev["nameservers"]["search"].push_back(s);
        }
    }
    auto device = [&](const std::string& name) -> json* {
        for (const char* kind : {"ethernets", "vlans", "bonds", "bridges"})
            if (net.contains(kind) && net[kind].contains(name)) return &net[kind][name];
        return nullptr;
    };
    for (const auto& sd : scoped_dns) {
        json* dev = device(sd.iface);
        if (!dev) {
            d.error(config.pos, fmt::format("network.config: nameserver for interface '{}': no "
                                            "such device",
                                            sd.iface));
            continue;
        }
        for (const auto& a : sd.addresses)
            (*dev)["nameservers"]["addresses"].push_back(a);
        for (const auto& x : sd.search)
            (*dev)["nameservers"]["search"].push_back(x);
    }
    for (auto& g : routes) {
        if (g.route.is_null() || !g.route.contains("via")) continue;
        const std::string via = g.route["via"];
        json* owner = g.iface.empty() ? nullptr : device(g.iface);
        std::vector<json*> configured;
        for (const char* kind : {"ethernets", "vlans", "bonds", "bridges"}) {
            if (!net.contains(kind) || !g.iface.empty()) continue;
            for (auto& [name, dev] : net[kind].items()) {
                if (dev.contains("addresses") || dev.contains("dhcp4") || dev.contains("dhcp6"))
                    configured.push_back(&dev);
                if (dev.contains("addresses"))
                    for (const auto& a : dev["addresses"])
                        if (!owner && contains(a.get<std::string>(), via)) owner = &dev;
            }
        }
        // No address holds the gateway (DHCP): the one configured device, if there is one.
        if (!owner && g.iface.empty() && configured.size() == 1) owner = configured.front();
        if (!owner) {
            d.error(g.pos, g.iface.empty()
                               ? fmt::format("network.config: route via {}: no device has an "
                                             "address on that gateway's network; name one "
                                             "with interface:",
                                             via)
                               : fmt::format("network.config: route via {}: no device '{}'", via,
                                             g.iface));
            continue;
        }
        (*owner)["routes"].push_back(g.route);
    }
    return json{{"network", net}};
}

namespace {

void emit(YAML::Emitter& out, const json& v) {
    if (v.is_object()) {
        out << YAML::BeginMap;
        for (const auto& [k, x] : v.items()) {
            out << YAML::Key << k << YAML::Value;
            emit(out, x);
        }
        out << YAML::EndMap;
    } else if (v.is_array()) {
        out << YAML::BeginSeq;
        for (const auto& x : v)
            emit(out, x);
        out << YAML::EndSeq;
    } else if (v.is_boolean()) {
        out << v.get<bool>();
    } else if (v.is_number_unsigned()) {
        out << v.get<uint64_t>();
    } else if (v.is_number_integer()) {
        out << v.get<int64_t>();
    } else if (v.is_string()) {
        // Quoted: a string never becomes a number or a boolean on the way (MAC addresses, "on").
        out << YAML::DoubleQuoted << v.get<std::string>();
    } else {
        out << YAML::Null;
    }
}

}  // namespace

std::string to_yaml(const json& doc) {
    YAML::Emitter out;
    out.SetBoolFormat(YAML::TrueFalseBool);
    emit(out, doc);
    return std::string(out.c_str()) + "\n";
}

void decode_network(const Node& net, const Position& key_pos, std::string_view text,
                    DecodeContext& ctx, Config& cfg) {
    auto& d = ctx.diags;
    if (net.is_null()) return;
    if (!net.is_mapping()) {
        d.error(net.pos, "network: expected a mapping (version: 1 or 2)");
        return;
    }
    if (const Node* c = net.find("config"); c && c->is_scalar() && c->scalar == "disabled") {
        cfg.network.push_back({key_pos, "", false, true});
        return;
    }
    const Node* v = net.find("version");
    if (!v) {
        d.error(key_pos, "network: no version (1 or 2)");
        return;
    }
    if (!v->is_scalar() || (v->scalar != "1" && v->scalar != "2")) {
        d.error(v->pos, fmt::format("network.version: 1 or 2, not '{}'",
                                    v->is_scalar() ? v->scalar : v->kind_name()));
        return;
    }
    const size_t errors = d.error_count();
    if (v->scalar == "1") {
        constexpr std::string_view keys[] = {"version", "config"};
        for (const auto& e : net.entries)
            if (std::find(std::begin(keys), std::end(keys), e.key) == std::end(keys))
                d.error(e.key_pos, fmt::format("network: unknown key '{}' for version 1", e.key));
        const Node* c = net.find("config");
        if (!c || !c->is_sequence()) {
            d.error(c ? c->pos : key_pos, "network.config: expected a list (version 1)");
            return;
        }
        auto doc = network_v1_to_v2(*c, d);
        if (d.error_count() != errors) return;
        cfg.network.push_back(
            {key_pos,
             fmt::format("# converted from the version 1 config at {}\n", to_string(key_pos)) +
                 to_yaml(doc),
             true, false});
        return;
    }
    for (const auto& e : net.entries) {
        if (std::find(std::begin(kV2Keys), std::end(kV2Keys), e.key) == std::end(kV2Keys)) {
            d.error(e.key_pos,
                    fmt::format("network: unknown key '{}'{}", e.key, hint(e.key, kV2Keys)));
        } else if (e.key == "renderer") {
            if (!e.value.is_scalar() || e.value.scalar != "networkd")
                d.error(e.value.pos,
                        "network.renderer: the image renders with systemd-networkd: "
                        "'networkd' or nothing");
        } else if (e.key != "version" && !e.value.is_null() && !e.value.is_mapping()) {
            d.error(e.value.pos, fmt::format("network.{}: expected a mapping of devices", e.key));
        }
    }
    if (key_pos.col != 1)
        d.error(key_pos,
                "network: write the block at the top level, in block style (netplan "
                "reads it where it stands)");
    if (d.error_count() != errors) return;
    // The block's own lines, every other line blanked: netplan's line:col are the file's. The
    // block runs from its key to the next line that starts in column 1 with content (the next
    // top-level key, a document marker): flow collections and block scalars that go on past
    // their last node's first line stay whole.
    std::string doc;
    int line = 1;
    bool inside = false, done = false;
    size_t pos = 0;
    while (pos < text.size()) {
        auto eol = text.find('\n', pos);
        auto l = text.substr(pos, eol == std::string_view::npos ? text.npos : eol - pos);
        if (line == key_pos.line) {
            inside = true;
        } else if (inside && !l.empty() && l.front() != ' ' && l.front() != '\t' &&
                   l.front() != '#' && l.front() != '\r') {
            inside = false;
            done = true;
        }
        if (inside && !done) doc += l;
        doc += '\n';
        pos = eol == std::string_view::npos ? text.size() : eol + 1;
        ++line;
    }
    cfg.network.push_back({key_pos, std::move(doc), false, false});
}

}  // namespace ballast::config
