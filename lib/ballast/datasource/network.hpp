// Platform network config: a cloud's own description of the machine's interfaces, converted to a
// cloud-init network config (version 1) as cloud-init converts each platform's format, so that the
// node's config renders it like any other (config/network.hpp). Used only where the node's own
// config has no network block, as cloud-init prefers a system config's network config to a
// datasource's. Pure: the machine's interfaces come in as a MAC-to-name map.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "ballast/core/result.hpp"
#include "ballast/core/root.hpp"

namespace ballast::datasource {

// Lower-case MAC address to the name of each network device with hardware behind it
// (/sys/class/net/NAME/device), under the node root.
using Macs = std::map<std::string, std::string>;
[[nodiscard]] Macs read_macs(const RootPrefix& root);

// Each gives {"version": 1, "config": [...]}, or null when the platform describes no interface.
// An error names the document and the field.

// OpenStack's network_data.json (config drive or metadata service): links (physical, bond, vlan),
// networks (DHCP, SLAAC, static with routes), DNS services. A physical link is named as the
// machine names its MAC address; one the machine does not have is an error.
[[nodiscard]] Result<nlohmann::json> openstack_network(std::string_view network_data_json,
                                                       const Macs& macs);
// DigitalOcean's metadata/v1.json `interfaces`: the first public and the first private NIC
// (named as the machine names their MAC address, where cloud-init renames them eth0 and eth1),
// static addresses (IPv4, IPv6, the anchor address), the gateway on the public NIC's own
// addresses only; `dns.nameservers`.
[[nodiscard]] Result<nlohmann::json> digitalocean_network(std::string_view metadata_json,
                                                          const Macs& macs);
// Vultr's v1.json `interfaces`: the first is public (DHCP and SLAAC), the others private (their
// static IPv4 address); additional addresses, routes and MTU as given; Vultr's resolvers.
[[nodiscard]] Result<nlohmann::json> vultr_network(std::string_view metadata_json,
                                                   const Macs& macs);
// Hetzner's metadata `network-config` is version 1 already (its NICs renamed as the machine
// names their MAC addresses); its private networks
// (metadata/private-networks, YAML: a list of {mac_address, ...}) get DHCP on the NIC with that
// MAC address.
[[nodiscard]] Result<nlohmann::json> hetzner_network(std::string_view metadata_yaml,
                                                     std::string_view private_networks_yaml,
                                                     const Macs& macs);

}  // namespace ballast::datasource
