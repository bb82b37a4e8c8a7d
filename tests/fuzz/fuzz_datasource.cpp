// libFuzzer target: bytes as a cloud's answer (datasource/): the first byte picks the parser
// (user-data decoding, or one platform's metadata document, Azure's XML ones included), the
// rest is the payload. A metadata service is reached over a link nobody vouches for: any crash,
// sanitizer report, or decoded user-data that breaks what the stage module relies on (configs with
// a header line, scripts starting "#!", the decoded size bound) is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "ballast/core/json.hpp"
#include "ballast/core/xml.hpp"
#include "ballast/datasource/network.hpp"
#include "ballast/datasource/providers.hpp"
#include "ballast/datasource/userdata.hpp"

using namespace ballast::datasource;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
    switch (data[0] % 12) {
        case 0: {
            auto u = decode_user_data(bytes);
            if (!u) return 0;
            size_t total = 0;
            for (const auto& c : u->configs) {
                if (c.rfind("#", 0) != 0) std::abort();
                total += c.size();
            }
            for (const auto& s : u->scripts) {
                if (s.rfind("#!", 0) != 0) std::abort();
                total += s.size();
            }
            // "#cloud-config\n" added to headerless typed parts is the only growth.
            if (total > kMaxUserData + 14 * (u->configs.size())) std::abort();
            return 0;
        }
        case 1:
            (void)parse_digitalocean(bytes);
            return 0;
        case 2:
            (void)parse_openstack(bytes);
            return 0;
        case 3:
            (void)parse_hetzner(bytes);
            return 0;
        case 4:
            (void)parse_vultr(bytes);
            return 0;
        case 5:
            (void)parse_scaleway(bytes);
            return 0;
        case 6:
            (void)parse_equinix(bytes);
            return 0;
        case 7:
            (void)parse_azure(bytes);
            return 0;
        case 8: {
            // Platform network config: every converter on the same bytes; the machine has one
            // NIC. A document it returns must be version 1 with a config list.
            // Hetzner's two documents: the metadata, then (after a NUL) its private networks.
            const Macs macs{{"fa:16:3e:00:00:01", "ens3"}};
            const auto nul = bytes.find('\0');
            const auto meta = bytes.substr(0, nul);
            const auto priv =
                nul == std::string_view::npos ? std::string_view() : bytes.substr(nul + 1);
            for (auto r : {openstack_network(bytes, macs), digitalocean_network(bytes, macs),
                           vultr_network(bytes, macs), hetzner_network(meta, priv, macs)}) {
                if (!r || r->is_null()) continue;
                if (!r->is_object() || !(*r)["config"].is_array()) std::abort();
                (void)ballast::json_text(*r);  // stored as text: must never throw
            }
            return 0;
        }
        case 10: {
            // Azure's ovf-env.xml (a DVD anyone who can attach one controls).
            auto m = parse_azure_ovf(bytes);
            if (!m || !*m) return 0;
            // The copy kept of it reads back the same (what XML can carry of it).
            auto back = parse_azure_ovf(azure_ovf_document(**m));
            if (!back || !*back || (*back)->ssh_keys.size() != (*m)->ssh_keys.size() ||
                (*back)->user_data != (*m)->user_data)
                std::abort();
            return 0;
        }
        case 11: {
            // The goal state's ids go back to the wireserver inside XML: the report must read
            // back as XML with the very same ids.
            auto gs = parse_azure_goal_state(bytes);
            if (!gs) return 0;
            const auto report = ballast::xml::parse(azure_ready_report(*gs), "report");
            if (!report) std::abort();
            const auto* inc = report->find({"GoalStateIncarnation"}, "");
            const auto* iid =
                report->find({"Container", "RoleInstanceList", "Role", "InstanceId"}, "");
            if (!inc || inc->text != gs->incarnation || !iid || iid->text != gs->instance_id)
                std::abort();
            return 0;
        }
        default:
            (void)parse_gce_ssh_keys(bytes);
            (void)parse_aws_key_indexes(bytes);
            return 0;
    }
}
