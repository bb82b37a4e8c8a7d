// Cloud metadata providers: each reads its platform's documented metadata service (or config
// drive) the way the platform specifies, and yields the instance's user-data, host name, SSH
// keys and, where the platform describes it, its network (datasource/network.hpp). Which platform a
// machine is on comes from DMI/SMBIOS first (as cloud-init's ds-identify does), then from asking
// the network; a provider whose service is not there costs at most the client's bounds (a 1 s
// connect, 3 s per request) and says so.
//
// The payload parsers are pure (parse_*), for unit tests and the fuzzer; fetching goes through
// Client, a narrow seam over http::request.
#pragma once

#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ballast/core/result.hpp"
#include "ballast/core/root.hpp"
#include "ballast/system/http.hpp"

namespace ballast::datasource {

// /sys/class/dmi/id, as the firmware reports the machine (under the node root).
struct Dmi {
    std::string sys_vendor, product_name, product_version, product_serial, product_uuid,
        chassis_asset_tag, bios_vendor, bios_version, board_vendor;
};
[[nodiscard]] Dmi read_dmi(const RootPrefix& root);

struct Metadata {
    std::string provider;
    std::string instance_id;
    std::string hostname;
    std::vector<std::string> ssh_keys;
    std::optional<std::string> user_data;  // as delivered, the platform's own encoding removed
    std::string origin;                    // "http://169.254.169.254/latest/user-data"
    // The platform's network config (datasource/network.hpp), cloud-init's version 1 as JSON
    // text; empty when the platform gives none. What kept it from being read, if anything.
    std::string network, network_error;
    std::vector<std::string> notes;  // what the provider passed over on the way
    // A part of the platform's service did not answer (Azure's IMDS, with the DVD read): asked
    // again while the step waits for a platform the firmware names, then used as it is.
    bool incomplete = false;
};

// Requests to a metadata service: bounded, never proxied, TLS verified (http.ca_file).
class Client {
  public:
    explicit Client(http::Options opts);
    // Any status comes back as a Reply; transport failures (refused, unreachable, timed out)
    // are errors with Errc::unavailable or Errc::timeout.
    [[nodiscard]] Result<http::Reply> call(const std::string& url, http::Request req) const;
    // 200: the body; 404 and 204: nullopt; anything else an error naming the URL and status.
    [[nodiscard]] Result<std::optional<std::string>> get(
        const std::string& url, const std::vector<std::string>& headers = {},
        const http::Options* override_opts = nullptr) const;
    [[nodiscard]] const http::Options& options() const { return opts_; }

  private:
    http::Options opts_;
};

// What a provider found: nullopt when its service is not there (nothing answered).
using Fetch = Result<std::optional<Metadata>> (*)(const Client&, const RootPrefix&, bool live);

struct Provider {
    std::string_view name;     // as the datasource step names it (Kairos, yip)
    std::string_view aliases;  // other spellings (k3OS, cloud-init), space-separated
    bool (*identified)(const Dmi&);
    Fetch fetch;
    // Once the instance's data is applied: tell the platform the machine is up (Azure's
    // provisioning waits for it). Null: nothing to tell.
    Status (*ready)(const Client&) = nullptr;
};

[[nodiscard]] std::span<const Provider> providers();
[[nodiscard]] const Provider* find_provider(std::string_view name);

// Every name a datasource step accepts: the clouds and their aliases, plus nocloud, cdrom and
// config_url (which the stage module reads itself).
[[nodiscard]] bool is_step_provider(std::string_view name);
[[nodiscard]] std::string step_provider_names();  // "nocloud, cdrom, config_url, aws, ..."

// The order to try `names` in (cloud-init's rule): those the DMI data identifies first, then the
// others, each group in the given order.
[[nodiscard]] std::vector<const Provider*> detection_order(const std::vector<std::string>& names,
                                                           const Dmi& dmi);

// Payload parsers (pure): each service's document to Metadata; an error names the field.
[[nodiscard]] Result<Metadata> parse_digitalocean(std::string_view json);
[[nodiscard]] Result<Metadata> parse_openstack(std::string_view meta_data_json);
[[nodiscard]] Result<Metadata> parse_hetzner(std::string_view yaml);
[[nodiscard]] Result<Metadata> parse_vultr(std::string_view json);
[[nodiscard]] Result<Metadata> parse_scaleway(std::string_view json);
[[nodiscard]] Result<Metadata> parse_equinix(std::string_view json);
[[nodiscard]] Result<Metadata> parse_azure(std::string_view json);
// Azure's wireserver: the goal state's ids, and the health report that says "Ready" for them.
struct AzureGoalState {
    std::string incarnation, container_id, instance_id;
};
[[nodiscard]] Result<AzureGoalState> parse_azure_goal_state(std::string_view xml);
// Azure's ovf-env.xml (on its provisioning DVD): host name, SSH keys and custom data (the
// user-data). nullopt when the document is not Azure's (no ProvisioningSection); errors name
// ovf-env.xml:LINE.
[[nodiscard]] Result<std::optional<Metadata>> parse_azure_ovf(std::string_view xml);
// The ovf-env.xml that gives back what parse_azure_ovf read from one (nothing else: no password).
[[nodiscard]] std::string azure_ovf_document(const Metadata& m);
[[nodiscard]] std::string azure_ready_report(const AzureGoalState& gs);

// GCE's ssh-keys attribute: "user:ssh-ed25519 AAAA... comment" lines to the keys.
[[nodiscard]] std::vector<std::string> parse_gce_ssh_keys(std::string_view text);
// AWS's public-keys/ listing ("0=name" lines) to the key indexes.
[[nodiscard]] std::vector<std::string> parse_aws_key_indexes(std::string_view text);

}  // namespace ballast::datasource
