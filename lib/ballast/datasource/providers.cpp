#include "ballast/datasource/providers.hpp"

#include <algorithm>
#include <cctype>
#include <ctime>
#include <functional>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>
#include <nlohmann/json.hpp>

#include "ballast/core/encoding.hpp"
#include "ballast/core/files.hpp"
#include "ballast/core/json.hpp"
#include "ballast/core/text.hpp"
#include "ballast/core/xml.hpp"
#include "ballast/datasource/json_fields.hpp"
#include "ballast/datasource/network.hpp"
#include "ballast/datasource/volume.hpp"

namespace ballast::datasource {
namespace {

using nlohmann::json;

constexpr const char* kLinkLocal = "http://169.254.169.254";
constexpr size_t kMaxDocument = 16u << 20;
constexpr size_t kMaxKeys = 100;  // a key listing asks once per key

std::string trimmed(std::string_view s) {
    return std::string(trim(s));
}

bool contains_nocase(std::string_view hay, std::string_view needle) {
    auto it = std::search(hay.begin(), hay.end(), needle.begin(), needle.end(), [](char a, char b) {
        return std::tolower(static_cast<unsigned char>(a)) ==
               std::tolower(static_cast<unsigned char>(b));
    });
    return it != hay.end();
}

// cloud-init's maybe_b64decode: user-data that is strictly base64 (EC2's API takes it encoded,
// and consoles pass it on so) is decoded; anything else is kept as it is.
std::string maybe_base64(std::string text) {
    std::string_view t = text;
    while (!t.empty() && (t.back() == '\n' || t.back() == '\r'))
        t.remove_suffix(1);
    if (t.empty() || t.size() % 4 != 0 ||
        t.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") !=
            std::string_view::npos)
        return text;
    auto eq = t.find('=');
    if (eq != std::string_view::npos &&
        (t.size() - eq > 2 || t.substr(eq).find_first_not_of('=') != std::string_view::npos))
        return text;
    auto decoded = base64_decode(t);
    return decoded ? std::move(*decoded) : text;
}

// The platform's network config, or why it could not be read (the rest of its data still is).
void set_network(Metadata& m, Result<json> net) {
    if (!net)
        m.network_error = net.error().what();
    else if (!net->is_null())
        m.network = json_text(*net);  // raw bytes of a YAML document: never a throw
}

// A transport failure on a provider's first request: its service is not there.
bool absent(const Error& e) {
    return e.code() == Errc::unavailable || e.code() == Errc::timeout;
}

// A list of key strings (or of objects holding one under `member`).
Result<std::vector<std::string>> keys_field(const json& j, std::string_view key,
                                            std::string_view what, std::string_view member = "") {
    std::vector<std::string> out;
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return out;
    auto add = [&](const json& v) -> Status {
        if (v.is_string()) {
            // One entry may hold several keys, one per line (DigitalOcean, Equinix).
            for (auto& line : nonempty_lines(v.get_ref<const std::string&>()))
                if (line.front() != '#') out.push_back(std::move(line));
            return {};
        }
        if (!member.empty() && v.is_object() && v.contains(member) && v[member].is_string()) {
            out.push_back(trimmed(v[member].get<std::string>()));
            return {};
        }
        return fail(Errc::invalid_argument, "{}: {} holds something that is not a key", what, key);
    };
    if (it->is_array()) {
        for (const auto& v : *it)
            BALLAST_TRY(add(v));
    } else if (it->is_object()) {  // OpenStack: {"name": "ssh-ed25519 ..."}
        for (const auto& [name, v] : it->items())
            BALLAST_TRY(add(v));
    } else {
        BALLAST_TRY(add(*it));
    }
    return out;
}

// ---- identification (cloud-init's ds-identify) -------------------------------------------------

bool is_aws(const Dmi& d) {
    const auto uuid = ascii_lower(d.product_uuid);
    return d.sys_vendor == "Amazon EC2" || uuid.starts_with("ec2") ||
           contains_nocase(d.bios_version, "amazon");
}
bool is_gce(const Dmi& d) {
    return d.product_name == "Google Compute Engine" || d.sys_vendor == "Google" ||
           d.product_serial.starts_with("GoogleCloud");
}
bool is_azure(const Dmi& d) {
    return d.chassis_asset_tag == "7783-7084-3265-9085-8269-3286-77";
}
bool is_openstack(const Dmi& d) {
    return d.product_name == "OpenStack Nova" || d.product_name == "OpenStack Compute" ||
           d.chassis_asset_tag == "OpenTelekomCloud" || d.chassis_asset_tag == "SAP CCloud VM" ||
           d.chassis_asset_tag == "HUAWEICLOUD";
}
bool is_digitalocean(const Dmi& d) {
    return d.sys_vendor == "DigitalOcean";
}
bool is_hetzner(const Dmi& d) {
    return d.sys_vendor == "Hetzner";
}
bool is_vultr(const Dmi& d) {
    return d.sys_vendor == "Vultr";
}
bool is_scaleway(const Dmi& d) {
    return d.sys_vendor == "Scaleway";
}
bool is_equinix(const Dmi& d) {
    return d.product_name == "Equinix Metal";
}

// ---- fetching -----------------------------------------------------------------------------------

// The first request decides whether the service is there at all: nullopt when nothing answered.
Result<std::optional<http::Reply>> probe(const Client& c, const std::string& url,
                                         const http::Request& req) {
    auto r = c.call(url, req);
    if (!r) {
        if (absent(r.error())) return std::optional<http::Reply>{};
        return std::unexpected(std::move(r.error()));
    }
    return std::optional<http::Reply>(std::move(*r));
}

Result<std::optional<Metadata>> fetch_aws(const Client& c, const RootPrefix&, bool) {
    const std::string base = std::string(kLinkLocal) + "/latest";
    // IMDSv2: a session token first (PUT, never redirected). 403: the instance's metadata
    // service is turned off. An EC2-compatible service without tokens (404/405) is asked
    // without one.
    http::Request put;
    put.method = "PUT";
    put.headers = {"X-aws-ec2-metadata-token-ttl-seconds: 21600"};
    put.follow_redirects = false;
    auto token_reply_answered = BALLAST_TRY(probe(c, base + "/api/token", put));
    if (!token_reply_answered) return std::optional<Metadata>{};
    const auto& token_reply = *token_reply_answered;
    std::vector<std::string> auth;
    if (token_reply.status == 200)
        auth = {"X-aws-ec2-metadata-token: " + trimmed(token_reply.body)};
    else if (token_reply.status == 403)
        return fail(Errc::failed,
                    "{}/api/token: HTTP 403: the instance metadata service is "
                    "turned off for this instance",
                    base);
    else if (token_reply.status != 404 && token_reply.status != 405)
        return fail(Errc::failed, "{}/api/token: HTTP {}", base, token_reply.status);
    Metadata m;
    m.provider = "aws";
    m.origin = base;
    auto id = BALLAST_TRY(c.get(base + "/meta-data/instance-id", auth));
    if (!id) return std::optional<Metadata>{};  // something else answers on that address
    m.instance_id = trimmed(*id);
    if (auto h = BALLAST_TRY(c.get(base + "/meta-data/local-hostname", auth)))
        m.hostname = trimmed(*h);
    if (auto keys = BALLAST_TRY(c.get(base + "/meta-data/public-keys/", auth)))
        for (const auto& idx : parse_aws_key_indexes(*keys))  // at most kMaxKeys
            if (auto k = BALLAST_TRY(
                    c.get(base + "/meta-data/public-keys/" + idx + "/openssh-key", auth)))
                m.ssh_keys.push_back(trimmed(*k));
    if (auto ud = BALLAST_TRY(c.get(base + "/user-data", auth))) m.user_data = maybe_base64(*ud);
    return std::optional<Metadata>(std::move(m));
}

Result<std::optional<Metadata>> fetch_gce(const Client& c, const RootPrefix&, bool) {
    const std::string base = std::string(kLinkLocal) + "/computeMetadata/v1";
    const std::vector<std::string> flavor = {"Metadata-Flavor: Google"};
    http::Request req;
    req.headers = flavor;
    auto answered = BALLAST_TRY(probe(c, base + "/instance/id", req));
    if (!answered) return std::optional<Metadata>{};
    const auto& first = *answered;
    // Only GCE's server answers with this header (cloud-init checks it too).
    auto it = first.headers.find("metadata-flavor");
    if (it == first.headers.end() || it->second != "Google" || first.status != 200)
        return std::optional<Metadata>{};
    Metadata m;
    m.provider = "gcp";
    m.origin = base;
    m.instance_id = trimmed(first.body);
    if (auto h = BALLAST_TRY(c.get(base + "/instance/hostname", flavor)))
        m.hostname = trimmed(h->substr(0, h->find('.')));
    // Project keys too, unless the instance blocks them or has legacy sshKeys (as cloud-init).
    auto block = BALLAST_TRY(c.get(base + "/instance/attributes/block-project-ssh-keys", flavor));
    bool project = !(block && contains_nocase(trimmed(*block), "true"));
    for (const char* where : {"/instance/attributes/ssh-keys", "/instance/attributes/sshKeys",
                              "/project/attributes/ssh-keys", "/project/attributes/sshKeys"}) {
        const bool of_project = std::string_view(where).starts_with("/project");
        if (of_project && !project) continue;
        auto k = BALLAST_TRY(c.get(base + where, flavor));
        if (!k) continue;
        if (std::string_view(where).ends_with("sshKeys") && !of_project) project = false;
        for (auto& key : parse_gce_ssh_keys(*k))
            m.ssh_keys.push_back(std::move(key));
    }
    auto ud = BALLAST_TRY(c.get(base + "/instance/attributes/user-data", flavor));
    if (ud) {
        auto enc = BALLAST_TRY(c.get(base + "/instance/attributes/user-data-encoding", flavor));
        if (enc && trimmed(*enc) == "base64")
            ud = BALLAST_TRY_CTX(base64_decode(*ud), "{}/instance/attributes/user-data", base);
    }
    m.user_data = std::move(ud);
    return std::optional<Metadata>(std::move(m));
}

// Azure ejects its provisioning DVD once the VM is provisioned: what came from it is kept here
// (as cloud-init keeps /var/lib/waagent/ovf-env.xml), written anew without the password.
constexpr std::string_view kAzureOvfCopy = "/var/lib/ballast/datasource/azure-ovf-env.xml";

// What the DVD gave, as applied, kept for the boots after Azure has ejected it: rewritten only
// when it changes.
Status keep_azure_ovf(const RootPrefix& root, const Metadata& m) {
    const auto doc = azure_ovf_document(m);
    if (auto old = read_beneath(root, kAzureOvfCopy, xml::kMaxDocument); old && *old == doc)
        return {};
    BALLAST_TRY(mkdirs_beneath(root, "/var/lib/ballast/datasource", 0700));
    return write_beneath(root, kAzureOvfCopy, doc, 0600);
}

// Azure's ovf-env.xml: on the provisioning DVD (iso9660 or udf, /dev/sr0 first, as cloud-init
// looks), else the copy kept from it. Volumes that cannot be read are passed over (noted), as
// cloud-init passes over what it cannot mount.
Result<std::optional<Metadata>> azure_ovf(const RootPrefix& root, bool live,
                                          std::vector<std::string>& notes) {
    auto volumes = find_volumes_by_type({"iso9660", "udf"}, live);
    std::stable_partition(volumes.begin(), volumes.end(),
                          [](const Volume& v) { return v.device == "/dev/sr0"; });
    for (const auto& v : volumes) {
        auto text = read_volume_file(v, "ovf-env.xml");
        if (!text) {
            notes.push_back(text.error().what());
            continue;
        }
        if (!*text) continue;
        auto m = BALLAST_TRY_CTX(parse_azure_ovf(**text), "{}", v.device);
        if (!m) continue;  // not Azure's
        m->origin = v.device;
        return m;
    }
    // The copy is the agent's own: a bad one is passed over (IMDS may still answer), not fatal.
    auto copy = read_beneath(root, kAzureOvfCopy, xml::kMaxDocument);
    auto m = copy && *copy ? parse_azure_ovf(**copy) : Result<std::optional<Metadata>>();
    if (!copy || !m) {
        notes.push_back(fmt::format("{}: {} (not used)", kAzureOvfCopy,
                                    !copy ? copy.error().what() : m.error().what()));
        return std::optional<Metadata>{};
    }
    if (*m) (*m)->origin = std::string(kAzureOvfCopy);
    return m;
}

// The DVD's ovf-env.xml, and IMDS: both when there are both (cloud-init's rules: the DVD's
// custom data, IMDS's host name, IMDS's keys unless it has none).
Result<std::optional<Metadata>> fetch_azure(const Client& c, const RootPrefix& root, bool live) {
    std::vector<std::string> notes;
    auto ovf = BALLAST_TRY(azure_ovf(root, live, notes));
    const std::string base = std::string(kLinkLocal) + "/metadata/instance?api-version=";
    http::Request req;
    req.headers = {"Metadata: true"};
    req.follow_redirects = false;
    std::string url = base + "2021-08-01&extended=true";
    std::optional<Metadata> m;
    if (auto answered = BALLAST_TRY(probe(c, url, req))) {
        auto reply = std::move(*answered);
        if (reply.status == 400) {  // an older IMDS
            url = base + "2019-06-01";
            reply = BALLAST_TRY(c.call(url, req));
        }
        if (reply.status != 200 && reply.status != 404)
            return fail(Errc::failed, "{}: HTTP {}", url, reply.status);
        if (reply.status == 200) {
            m = BALLAST_TRY_CTX(parse_azure(reply.body), "{}", url);
            m->origin = url;
        }
    }
    if (!m && !ovf) return std::optional<Metadata>{};
    if (!m) {
        m = ovf;
        m->incomplete = true;
        m->notes.push_back(fmt::format("IMDS did not answer: {} alone", ovf->origin));
    } else if (ovf) {
        if (ovf->user_data) {
            m->user_data = ovf->user_data;
            m->origin = ovf->origin;
        }
        if (m->hostname.empty()) m->hostname = ovf->hostname;
        if (m->ssh_keys.empty()) m->ssh_keys = ovf->ssh_keys;
    }
    if (ovf) {
        // The DVD's custom data (never IMDS's userData), with the host name and keys applied.
        auto kept = *ovf;
        kept.hostname = m->hostname;
        kept.ssh_keys = m->ssh_keys;
        if (auto done = keep_azure_ovf(root, kept); !done)
            notes.push_back(fmt::format("{} not kept: {}", kAzureOvfCopy, done.error().what()));
    }
    m->notes.insert(m->notes.end(), notes.begin(), notes.end());
    // Azure's instance id is the firmware's (cloud-init's rule), not in IMDS.
    if (auto uuid = read_dmi(root).product_uuid; !uuid.empty()) m->instance_id = uuid;
    return m;
}

// Azure's provisioning waits for the guest to report ready to the wireserver (as its agent and
// cloud-init do): the goal state's ids, then a health report saying Ready.
Status azure_ready(const Client& c) {
    const std::string wire = "http://168.63.129.16";
    const std::vector<std::string> hdr = {"x-ms-agent-name: WALinuxAgent",
                                          "x-ms-version: 2012-11-30"};
    auto goal = BALLAST_TRY(c.get(wire + "/machine/?comp=goalstate", hdr));
    if (!goal) return fail(Errc::failed, "{}/machine/?comp=goalstate: HTTP 404", wire);
    auto gs = BALLAST_TRY_CTX(parse_azure_goal_state(*goal), "{} goal state", wire);
    http::Request post;
    post.method = "POST";
    post.headers = hdr;
    post.headers.push_back("Content-Type: text/xml; charset=utf-8");
    post.body = azure_ready_report(gs);
    const std::string url = wire + "/machine?comp=health";
    auto r = BALLAST_TRY(c.call(url, post));
    if (r.status != 200 && r.status != 201 && r.status != 202)
        return fail(Errc::failed, "{}: HTTP {}", url, r.status);
    return {};
}

Result<std::optional<Metadata>> fetch_openstack(const Client& c, const RootPrefix& root,
                                                bool live) {
    // The config drive first (no network needed), then the metadata service.
    if (auto v = find_volume({"config-2"}, live)) {
        auto meta = BALLAST_TRY(read_volume_file(*v, "openstack/latest/meta_data.json"));
        if (!meta)
            return fail(Errc::invalid_argument,
                        "{}: a config-2 volume without "
                        "openstack/latest/meta_data.json",
                        v->device);
        auto m = BALLAST_TRY_CTX(parse_openstack(*meta), "{}", v->device);
        m.user_data = BALLAST_TRY(read_volume_file(*v, "openstack/latest/user_data"));
        m.origin = v->device;
        if (auto net = read_volume_file(*v, "openstack/latest/network_data.json"); !net)
            m.network_error = net.error().what();
        else if (*net)
            set_network(m, openstack_network(**net, read_macs(root)));
        return std::optional<Metadata>(std::move(m));
    }
    const std::string base = std::string(kLinkLocal) + "/openstack/latest";
    http::Request req;
    auto reply_answered = BALLAST_TRY(probe(c, base + "/meta_data.json", req));
    if (!reply_answered) return std::optional<Metadata>{};
    const auto& reply = *reply_answered;
    if (reply.status == 404) return std::optional<Metadata>{};
    if (reply.status != 200)
        return fail(Errc::failed, "{}/meta_data.json: HTTP {}", base, reply.status);
    auto m = BALLAST_TRY_CTX(parse_openstack(reply.body), "{}/meta_data.json", base);
    m.user_data = BALLAST_TRY(c.get(base + "/user_data"));
    m.origin = base;
    if (auto net = c.get(base + "/network_data.json"); !net)
        m.network_error = net.error().what();
    else if (*net)
        set_network(m, openstack_network(**net, read_macs(root)));
    return std::optional<Metadata>(std::move(m));
}

// Providers whose service hands out one document with everything but the user-data, then the
// user-data at its own URL (`user_url` empty: in the document).
Result<std::optional<Metadata>> fetch_document(
    const Client& c, const std::string& url, const std::string& user_url,
    const std::function<Result<Metadata>(std::string_view)>& parse,
    const http::Options* user_opts = nullptr, std::vector<std::string> headers = {}) {
    http::Request req;
    req.headers = std::move(headers);
    auto reply_answered = BALLAST_TRY(probe(c, url, req));
    if (!reply_answered) return std::optional<Metadata>{};
    const auto& reply = *reply_answered;
    if (reply.status == 404) return std::optional<Metadata>{};
    if (reply.status != 200) return fail(Errc::failed, "{}: HTTP {}", url, reply.status);
    auto m = BALLAST_TRY_CTX(parse(reply.body), "{}", url);
    m.origin = url;
    if (!user_url.empty()) m.user_data = BALLAST_TRY(c.get(user_url, {}, user_opts));
    return std::optional<Metadata>(std::move(m));
}

// A platform whose one document describes its network too (DigitalOcean, Vultr).
std::function<Result<Metadata>(std::string_view)> with_network(
    Result<Metadata> (*parse)(std::string_view),
    Result<json> (*network)(std::string_view, const Macs&), const RootPrefix& root) {
    return [parse, network, &root](std::string_view body) -> Result<Metadata> {
        auto m = BALLAST_TRY(parse(body));
        set_network(m, network(body, read_macs(root)));
        return m;
    };
}

Result<std::optional<Metadata>> fetch_digitalocean(const Client& c, const RootPrefix& root, bool) {
    return fetch_document(c, std::string(kLinkLocal) + "/metadata/v1.json", "",
                          with_network(parse_digitalocean, digitalocean_network, root));
}

Result<std::optional<Metadata>> fetch_hetzner(const Client& c, const RootPrefix& root, bool) {
    const std::string base = std::string(kLinkLocal) + "/hetzner/v1";
    std::string metadata;
    auto m = BALLAST_TRY(
        fetch_document(c, base + "/metadata", base + "/userdata", [&](std::string_view body) {
            metadata = body;
            return parse_hetzner(body);
        }));
    if (!m) return m;
    // An empty body (204) is no user-data.
    if (m->user_data) {
        if (trimmed(*m->user_data).empty())
            m->user_data.reset();
        else
            m->user_data = maybe_base64(*m->user_data);
    }
    if (auto priv = c.get(base + "/metadata/private-networks"); !priv)
        m->network_error = priv.error().what();
    else
        set_network(*m, hetzner_network(metadata, priv->value_or(""), read_macs(root)));
    return m;
}

Result<std::optional<Metadata>> fetch_vultr(const Client& c, const RootPrefix& root, bool) {
    return fetch_document(c, std::string(kLinkLocal) + "/v1.json", "",
                          with_network(parse_vultr, vultr_network, root), nullptr,
                          {"Metadata-Token: cloudinit"});
}

Result<std::optional<Metadata>> fetch_scaleway(const Client& c, const RootPrefix&, bool) {
    const std::string base = "http://169.254.42.42";
    // User-data only to a privileged source port: proof the request comes from root.
    http::Options privileged = c.options();
    privileged.local_port = 1;
    privileged.local_port_range = 1023;
    return fetch_document(c, base + "/conf?format=json", base + "/user_data/cloud-init",
                          parse_scaleway, &privileged);
}

Result<std::optional<Metadata>> fetch_equinix(const Client& c, const RootPrefix&, bool) {
    const std::string base = "https://metadata.platformequinix.com";
    return fetch_document(c, base + "/metadata", base + "/userdata", parse_equinix);
}

constexpr Provider kProviders[] = {
    {"aws", "ec2 amazon", is_aws, fetch_aws},
    {"gcp", "gce google", is_gce, fetch_gce},
    {"azure", "", is_azure, fetch_azure, azure_ready},
    {"openstack", "config-drive configdrive", is_openstack, fetch_openstack},
    {"digitalocean", "", is_digitalocean, fetch_digitalocean},
    {"hetzner", "", is_hetzner, fetch_hetzner},
    {"vultr", "", is_vultr, fetch_vultr},
    {"scaleway", "", is_scaleway, fetch_scaleway},
    {"equinix", "packet metal", is_equinix, fetch_equinix},
};

}  // namespace

Result<json> parse_json(std::string_view text, std::string_view what) {
    auto j = json::parse(text, nullptr, false);
    if (j.is_discarded()) return fail(Errc::invalid_argument, "{}: not valid JSON", what);
    if (!j.is_object()) return fail(Errc::invalid_argument, "{}: not a JSON object", what);
    return j;
}

Result<std::string> str_field(const json& j, std::string_view key, std::string_view what) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return std::string();
    if (it->is_string()) return it->get<std::string>();
    if (it->is_number_integer()) return std::to_string(it->get<long long>());
    return fail(Errc::invalid_argument, "{}: {} is not a string", what, key);
}

Dmi read_dmi(const RootPrefix& root) {
    auto field = [&](const char* name) {
        auto r = read_beneath(root, std::string("/sys/class/dmi/id/") + name);
        return r && *r ? trimmed(**r) : std::string();
    };
    return {field("sys_vendor"),     field("product_name"), field("product_version"),
            field("product_serial"), field("product_uuid"), field("chassis_asset_tag"),
            field("bios_vendor"),    field("bios_version"), field("board_vendor")};
}

Client::Client(http::Options opts) : opts_(std::move(opts)) {
    opts_.no_proxy = true;
    opts_.connect_timeout = std::chrono::seconds(1);
    opts_.timeout = std::chrono::seconds(3);
    opts_.max_size = kMaxDocument;
}

Result<http::Reply> Client::call(const std::string& url, http::Request req) const {
    if (req.max_body == 0) req.max_body = kMaxDocument;
    // libcurl would send the platform's headers (tokens) on to wherever a redirect points.
    req.follow_redirects = false;
    return http::request(url, opts_, req);
}

Result<std::optional<std::string>> Client::get(const std::string& url,
                                               const std::vector<std::string>& headers,
                                               const http::Options* override_opts) const {
    http::Request req;
    req.headers = headers;
    req.max_body = kMaxDocument;
    req.follow_redirects = false;
    auto r = BALLAST_TRY(http::request(url, override_opts ? *override_opts : opts_, req));
    if (r.status == 404 || r.status == 204) return std::optional<std::string>();
    if (r.status != 200) return fail(Errc::failed, "{}: HTTP {}", url, r.status);
    return std::optional<std::string>(std::move(r.body));
}

std::span<const Provider> providers() {
    return kProviders;
}

const Provider* find_provider(std::string_view name) {
    for (const auto& p : kProviders) {
        if (p.name == name) return &p;
        std::string_view a = p.aliases;
        while (!a.empty()) {
            auto sp = a.find(' ');
            if (a.substr(0, sp) == name) return &p;
            a = sp == std::string_view::npos ? "" : a.substr(sp + 1);
        }
    }
    return nullptr;
}

bool is_step_provider(std::string_view name) {
    return name == "nocloud" || name == "cdrom" || name == "config_url" || find_provider(name);
}

std::string step_provider_names() {
    std::string out = "nocloud, cdrom, config_url";
    for (const auto& p : kProviders)
        out += fmt::format(", {}", p.name);
    return out;
}

std::vector<const Provider*> detection_order(const std::vector<std::string>& names,
                                             const Dmi& dmi) {
    std::vector<const Provider*> first, rest;
    for (const auto& n : names) {
        const Provider* p = find_provider(n);
        if (!p || std::find(first.begin(), first.end(), p) != first.end() ||
            std::find(rest.begin(), rest.end(), p) != rest.end())
            continue;
        (p->identified(dmi) ? first : rest).push_back(p);
    }
    first.insert(first.end(), rest.begin(), rest.end());
    return first;
}

// ---- payload parsers ----------------------------------------------------------------------------

namespace {

// A platform whose service answers one flat JSON document: where its fields are.
struct JsonShape {
    std::string_view provider, document, id, hostname, keys, key_member, user_data;
};

Result<Metadata> parse_flat(std::string_view text, const JsonShape& f) {
    auto j = BALLAST_TRY(parse_json(text, f.document));
    Metadata m;
    m.provider = f.provider;
    m.instance_id = BALLAST_TRY(str_field(j, f.id, f.document));
    m.hostname = BALLAST_TRY(str_field(j, f.hostname, f.document));
    m.ssh_keys = BALLAST_TRY(keys_field(j, f.keys, f.document, f.key_member));
    if (!f.user_data.empty())
        if (auto ud = BALLAST_TRY(str_field(j, f.user_data, f.document)); !ud.empty())
            m.user_data = std::move(ud);
    return m;
}

}  // namespace

Result<Metadata> parse_digitalocean(std::string_view text) {
    return parse_flat(text, {"digitalocean", "metadata/v1.json", "droplet_id", "hostname",
                             "public_keys", "", "user_data"});
}

Result<Metadata> parse_vultr(std::string_view text) {
    auto m = BALLAST_TRY(parse_flat(
        text, {"vultr", "v1.json", "instance-v2-id", "hostname", "public-keys", "", "user-data"}));
    if (m.instance_id.empty()) {  // older instances
        auto j = BALLAST_TRY(parse_json(text, "v1.json"));
        m.instance_id = BALLAST_TRY(str_field(j, "instanceid", "v1.json"));
    }
    return m;
}

Result<Metadata> parse_scaleway(std::string_view text) {
    return parse_flat(
        text, {"scaleway", "conf?format=json", "id", "hostname", "ssh_public_keys", "key", ""});
}

Result<Metadata> parse_equinix(std::string_view text) {
    return parse_flat(text, {"equinix", "metadata", "id", "hostname", "ssh_keys", "", ""});
}

Result<Metadata> parse_openstack(std::string_view text) {
    auto j = BALLAST_TRY(parse_json(text, "meta_data.json"));
    Metadata m;
    m.provider = "openstack";
    m.instance_id = BALLAST_TRY(str_field(j, "uuid", "meta_data.json"));
    m.hostname = BALLAST_TRY(str_field(j, "hostname", "meta_data.json"));
    if (m.hostname.empty()) m.hostname = BALLAST_TRY(str_field(j, "name", "meta_data.json"));
    m.hostname = m.hostname.substr(0, m.hostname.find('.'));
    m.ssh_keys = BALLAST_TRY(keys_field(j, "public_keys", "meta_data.json"));
    return m;
}

Result<Metadata> parse_hetzner(std::string_view text) {
    YAML::Node y;
    try {
        y = YAML::Load(std::string(text));
    } catch (const YAML::Exception& e) {
        return fail(Errc::invalid_argument, "hetzner metadata: not valid YAML: {}", e.what());
    }
    if (!y.IsMap()) return fail(Errc::invalid_argument, "hetzner metadata: not a mapping");
    Metadata m;
    m.provider = "hetzner";
    auto scalar = [&](const char* key) -> Result<std::string> {
        auto n = y[key];
        if (!n || n.IsNull()) return std::string();
        if (!n.IsScalar())
            return fail(Errc::invalid_argument, "hetzner metadata: {} is not a string", key);
        return n.Scalar();
    };
    m.instance_id = BALLAST_TRY(scalar("instance-id"));
    m.hostname = BALLAST_TRY(scalar("hostname"));
    if (auto keys = y["public-keys"]; keys && !keys.IsNull()) {
        if (!keys.IsSequence())
            return fail(Errc::invalid_argument, "hetzner metadata: public-keys is not a list");
        for (const auto& k : keys) {
            if (!k.IsScalar())
                return fail(Errc::invalid_argument,
                            "hetzner metadata: public-keys holds something that is not a key");
            m.ssh_keys.push_back(trimmed(k.Scalar()));
        }
    }
    return m;
}

Result<Metadata> parse_azure(std::string_view text) {
    auto j = BALLAST_TRY(parse_json(text, "metadata/instance"));
    Metadata m;
    m.provider = "azure";
    auto compute = j.find("compute");
    if (compute == j.end() || !compute->is_object())
        return fail(Errc::invalid_argument, "metadata/instance: no compute object");
    m.instance_id = BALLAST_TRY(str_field(*compute, "vmId", "metadata/instance: compute"));
    if (auto os = compute->find("osProfile"); os != compute->end() && os->is_object())
        m.hostname = BALLAST_TRY(str_field(*os, "computerName", "metadata/instance: osProfile"));
    if (m.hostname.empty())
        m.hostname = BALLAST_TRY(str_field(*compute, "name", "metadata/instance: compute"));
    m.ssh_keys =
        BALLAST_TRY(keys_field(*compute, "publicKeys", "metadata/instance: compute", "keyData"));
    // Always base64 (whitespace dropped); empty when the VM has none.
    auto ud = BALLAST_TRY(str_field(*compute, "userData", "metadata/instance: compute"));
    if (!trimmed(ud).empty())
        m.user_data = BALLAST_TRY_CTX(base64_decode(ud), "metadata/instance: compute.userData");
    return m;
}

namespace {

// The goal state's ids go back into XML: only what ids are made of.
bool plain_id(std::string_view s) {
    return !s.empty() && s.size() <= 128 &&
           s.find_first_not_of(
               "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-_") ==
               std::string_view::npos;
}

constexpr std::string_view kAzureNs = "http://schemas.microsoft.com/windowsazure";

// The one child `name` of an ovf-env.xml section (Azure's namespace); null when there is none.
Result<const xml::Element*> ovf_one(const xml::Element& in, std::string_view name, bool required) {
    const auto found = in.all(name, kAzureNs);
    if (found.size() > 1)
        return fail(Errc::invalid_argument, "ovf-env.xml:{}: {} more than once in {}",
                    found[1]->line, name, in.name);
    if (found.empty() && required)
        return fail(Errc::invalid_argument, "ovf-env.xml:{}: {} has no {}", in.line, in.name, name);
    return found.empty() ? nullptr : found[0];
}

// Azure's booleans as cloud-init's translate_bool reads them.
bool ovf_true(const xml::Element* e) {
    if (!e) return false;
    const auto v = ascii_lower(trimmed(e->text));
    return v == "true" || v == "1" || v == "on" || v == "yes";
}

}  // namespace

Result<AzureGoalState> parse_azure_goal_state(std::string_view text) {
    const auto doc = BALLAST_TRY(xml::parse(text, "goal state"));
    const auto* inc = doc.find({"Incarnation"}, "");
    const auto* cid = doc.find({"Container", "ContainerId"}, "");
    const auto* iid = doc.find({"Container", "RoleInstanceList", "RoleInstance", "InstanceId"}, "");
    if (!inc || !cid || !iid)
        return fail(Errc::invalid_argument,
                    "goal state: no Incarnation, Container/ContainerId or "
                    "Container/RoleInstanceList/RoleInstance/InstanceId");
    AzureGoalState gs{trimmed(inc->text), trimmed(cid->text), trimmed(iid->text)};
    for (const auto* e : {inc, cid, iid})
        if (!plain_id(trimmed(e->text)))
            return fail(Errc::invalid_argument, "goal state:{}: {} with unexpected characters",
                        e->line, e->name);
    return gs;
}

std::string azure_ovf_document(const Metadata& m) {
    std::string keys;
    for (const auto& k : m.ssh_keys)
        keys += fmt::format("          <wa:PublicKey><wa:Value>{}</wa:Value></wa:PublicKey>\n",
                            xml::escape(k));
    return fmt::format(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
        "<Environment xmlns=\"http://schemas.dmtf.org/ovf/environment/1\" xmlns:wa=\"{}\">\n"
        "  <wa:ProvisioningSection>\n"
        "    <wa:Version>1.0</wa:Version>\n"
        "    <wa:LinuxProvisioningConfigurationSet>\n"
        "      <wa:ConfigurationSetType>LinuxProvisioningConfiguration</wa:ConfigurationSetType>\n"
        "      <wa:HostName>{}</wa:HostName>\n"
        "{}"
        "      <wa:SSH>\n"
        "        <wa:PublicKeys>\n"
        "{}"
        "        </wa:PublicKeys>\n"
        "      </wa:SSH>\n"
        "    </wa:LinuxProvisioningConfigurationSet>\n"
        "  </wa:ProvisioningSection>\n"
        "  <wa:PlatformSettingsSection>\n"
        "    <wa:Version>1.0</wa:Version>\n"
        "    <wa:PlatformSettings/>\n"
        "  </wa:PlatformSettingsSection>\n"
        "</Environment>\n",
        kAzureNs, xml::escape(m.hostname),
        m.user_data
            ? fmt::format("      <wa:CustomData>{}</wa:CustomData>\n", base64_encode(*m.user_data))
            : std::string(),
        keys);
}

Result<std::optional<Metadata>> parse_azure_ovf(std::string_view text) {
    const auto doc = BALLAST_TRY(xml::parse(text, "ovf-env.xml"));
    // cloud-init's rule: without a ProvisioningSection it is not Azure's.
    if (doc.all("ProvisioningSection", kAzureNs).empty()) return std::optional<Metadata>{};
    const auto* section = BALLAST_TRY(ovf_one(doc, "ProvisioningSection", true));
    const auto* set = BALLAST_TRY(ovf_one(*section, "LinuxProvisioningConfigurationSet", true));
    const auto* platform = BALLAST_TRY(ovf_one(doc, "PlatformSettingsSection", true));
    const auto* settings = BALLAST_TRY(ovf_one(*platform, "PlatformSettings", true));
    // A pre-provisioned VM waits in a pool to be handed its real ovf-env.xml later: a protocol
    // of its own (cloud-init's reprovisioning), not the instance's data.
    if (const auto* pre = BALLAST_TRY(ovf_one(*settings, "PreprovisionedVm", false)); ovf_true(pre))
        return fail(Errc::unsupported,
                    "ovf-env.xml:{}: a pre-provisioned VM (PreprovisionedVm) is not supported",
                    pre->line);
    // cloud-init's _determine_pps_type: these types are pools too.
    if (const auto* type = BALLAST_TRY(ovf_one(*settings, "PreprovisionedVMType", false)); type)
        if (const auto t = trimmed(type->text);
            t == "Running" || t == "Savable" || t == "PreprovisionedOSDisk")
            return fail(Errc::unsupported,
                        "ovf-env.xml:{}: a pre-provisioned VM (PreprovisionedVMType {}) is not "
                        "supported",
                        type->line, t);
    Metadata m;
    m.provider = "azure";
    m.hostname = trimmed(BALLAST_TRY(ovf_one(*set, "HostName", true))->text);
    if (const auto* cd = BALLAST_TRY(ovf_one(*set, "CustomData", false)); cd) {
        auto decoded = base64_decode(cd->text);
        if (!decoded)
            return fail(Errc::invalid_argument, "ovf-env.xml:{}: CustomData: {}", cd->line,
                        decoded.error().message());
        // Empty is how Azure writes "none": IMDS's userData may then apply (cloud-init's rule).
        if (!decoded->empty()) m.user_data = std::move(*decoded);
    }
    // UserName and UserPassword are not used: keys go to root, as every provider's do, and
    // the password is never kept.
    if (const auto* ssh = BALLAST_TRY(ovf_one(*set, "SSH", false)); ssh)
        if (const auto* keys = BALLAST_TRY(ovf_one(*ssh, "PublicKeys", false)); keys)
            for (const auto* key : keys->all("PublicKey", kAzureNs))
                if (const auto* v = BALLAST_TRY(ovf_one(*key, "Value", false)); v)
                    if (auto value = trimmed(v->text); !value.empty())
                        m.ssh_keys.push_back(std::move(value));
    return std::optional<Metadata>(std::move(m));
}

std::string azure_ready_report(const AzureGoalState& gs) {
    return fmt::format(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
        "<Health xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" "
        "xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\">\n"
        "  <GoalStateIncarnation>{}</GoalStateIncarnation>\n"
        "  <Container>\n"
        "    <ContainerId>{}</ContainerId>\n"
        "    <RoleInstanceList>\n"
        "      <Role>\n"
        "        <InstanceId>{}</InstanceId>\n"
        "        <Health>\n"
        "          <State>Ready</State>\n"
        "        </Health>\n"
        "      </Role>\n"
        "    </RoleInstanceList>\n"
        "  </Container>\n"
        "</Health>\n",
        gs.incarnation, gs.container_id, gs.instance_id);
}

namespace {

// `gcloud compute ssh` adds short-lived keys: "... google-ssh {"userName":"u",
// "expireOn":"2024-04-26T10:45:00+0000"}"; an expired one is dropped (as cloud-init does).
bool gce_key_expired(std::string_view key) {
    const auto at = key.find("google-ssh {");
    if (at == std::string_view::npos) return false;
    const auto meta = nlohmann::json::parse(key.substr(at + 11), nullptr, false);
    if (!meta.is_object() || !meta.contains("expireOn") || !meta["expireOn"].is_string())
        return false;
    std::tm tm{};
    const std::string when = meta["expireOn"];
    if (!strptime(when.c_str(), "%Y-%m-%dT%H:%M:%S", &tm)) return true;  // unreadable: not kept
    return timegm(&tm) < std::time(nullptr);
}

}  // namespace

std::vector<std::string> parse_gce_ssh_keys(std::string_view text) {
    std::vector<std::string> out;
    for (const auto& line : nonempty_lines(text)) {
        auto colon = line.find(':');
        auto space = line.find(' ');
        // "user:ssh-ed25519 AAAA..." (a user name never holds a space).
        if (colon == std::string::npos || (space != std::string::npos && space < colon)) continue;
        auto key = trimmed(std::string_view(line).substr(colon + 1));
        if (!key.empty() && !gce_key_expired(key)) out.push_back(key);
    }
    return out;
}

std::vector<std::string> parse_aws_key_indexes(std::string_view text) {
    std::vector<std::string> out;
    for (const auto& line : nonempty_lines(text)) {
        auto idx = line.substr(0, line.find('='));
        if (!idx.empty() && idx.find_first_not_of("0123456789") == std::string::npos &&
            out.size() < kMaxKeys)
            out.push_back(idx);
    }
    return out;
}

}  // namespace ballast::datasource
