#include "ballast/config/agent_settings.hpp"

#include <cerrno>
#include <system_error>

#include "ballast/config/fields.hpp"
#include "ballast/config/tree.hpp"
#include "ballast/core/atomic_file.hpp"
#include "ballast/core/log.hpp"
#include "ballast/core/text.hpp"
#include "ballast/crypt/pcr.hpp"

namespace ballast::config {

namespace {

using K = FieldKind;
using Reconcile = AgentSettings::Reconcile;
using Http = AgentSettings::Http;
using Update = AgentSettings::Update;
using K3s = AgentSettings::K3s;

void reconcile_interval(const MapReader& r, std::string_view key, Reconcile& rec, DecodeContext&) {
    if (r.read(key, rec.interval) && rec.interval.count() != 0 &&
        rec.interval < std::chrono::minutes(1))
        r.error(key, "must be 0 (never) or at least 1m");
}

constexpr Field<Reconcile> kReconcileFields[] = {
    {{"interval", K::duration, "how often the config is re-applied (0: never; at least 1m)"},
     &reconcile_interval},
    {{"delay", K::duration, "the first reconcile after start"}, &read::value<&Reconcile::delay>},
};
constexpr Table<Reconcile> kReconcile{"reconcile", "Re-applying the config while running",
                                      Severity::error, kReconcileFields};

constexpr Field<Http> kHttpFields[] = {
    {{"ca_file", K::string, "PEM bundle to trust instead of the system's"},
     &read::checked<&Http::ca_file, &absolute_path>},
    {{"proxy", K::string, "proxy URL (default: https_proxy and no_proxy)"},
     &read::value<&Http::proxy>},
};
constexpr Table<Http> kHttp{"http", "Downloads", Severity::error, kHttpFields};

constexpr Field<Update> kUpdateFields[] = {
    {{"compatible", K::string, "what bundles must say (default: the image's)"},
     &read::value<&Update::compatible>},
    {{"keyring", K::string, "trusted signers (default /etc/ballast/keyring.pem, else the image's)"},
     &read::checked<&Update::keyring, &absolute_path>},
    {{"registry_auth", K::string,
      "credentials for oci:// sources (containers-auth.json / ~/.docker/config.json format)"},
     &read::checked<&Update::registry_auth, &absolute_path>},
    {{"tries", K::integer, "boots a new slot gets to come up healthy (1-9)"},
     &read::number<&Update::tries, 1, 9>},
};
constexpr Table<Update> kUpdate{"update", "A/B updates", Severity::error, kUpdateFields};

void health_deadline(const MapReader& r, std::string_view key, health::Settings& h,
                     DecodeContext&) {
    (void)r.read(key, h.deadline);
    if (h.deadline < std::chrono::seconds(1)) r.error(key, "must be at least 1s");
}

void health_interval(const MapReader& r, std::string_view key, health::Settings& h,
                     DecodeContext&) {
    (void)r.read(key, h.interval);
    if (h.interval < std::chrono::milliseconds(100)) r.error(key, "must be at least 100ms");
}

constexpr Field<health::Settings> kAgentHealthFields[] = {
    {{"units", K::strings, "units that must be active"}, &read::value<&health::Settings::units>},
    {{"commands", K::strings, "commands that must exit 0 (sh -c)"},
     &read::value<&health::Settings::commands>},
    {{"deadline", K::duration, "time a new boot has to become healthy (at least 1s)"},
     &health_deadline},
    {{"interval", K::duration, "between failed rounds (at least 100ms)"}, &health_interval},
};
constexpr Table<health::Settings> kAgentHealth{"health", "Boot assessment", Severity::error,
                                               kAgentHealthFields};

void k3s_binary(const MapReader& r, std::string_view key, K3s& k, DecodeContext&) {
    (void)r.read(key, k.binary_sha256);
    if (k.binary_url.empty()) return;
    if (!is_https_url(k.binary_url)) r.error("binary_url", "expected an https:// URL");
    if (!is_sha256_hex(k.binary_sha256))
        r.error(key, "a k3s artifact needs its sha256 (64 lower-case hex digits)");
}

constexpr Field<K3s> kAgentK3sFields[] = {
    {{"binary_url", K::string, "https:// URL of k3s when the image has none"},
     &read::value<&K3s::binary_url>},
    {{"binary_sha256", K::string, "its SHA-256 (64 lower-case hex digits)"}, &k3s_binary},
    {{"readiness_deadline", K::duration, "how long one readiness probe may take"},
     &read::value<&K3s::readiness_deadline>},
};
constexpr Table<K3s> kAgentK3s{"k3s", "k3s", Severity::error, kAgentK3sFields};

std::string_view tcti(const std::string& s) {
    return s.find(':') != std::string::npos || s == "auto"
               ? ""
               : "expected a TCTI such as device:/dev/tpmrm0 or swtpm:host=H,port=P";
}

void tpm_pcrs(const MapReader& r, std::string_view key, crypt::TpmSettings& t, DecodeContext&) {
    if (r.read(key, t.pcrs))
        if (auto m = crypt::parse_pcr_list(t.pcrs); !m) r.error(key, m.error().message());
}

void tpm_bank(const MapReader& r, std::string_view key, crypt::TpmSettings& t, DecodeContext&) {
    if (r.read(key, t.pcr_bank))
        if (auto b = crypt::parse_pcr_bank(t.pcr_bank); !b) r.error(key, b.error().message());
}

void tpm_key_pcrs(const MapReader& r, std::string_view key, crypt::TpmSettings& t, DecodeContext&) {
    if (!r.read(key, t.public_key_pcrs)) return;
    auto m = crypt::parse_pcr_list(t.public_key_pcrs);
    if (!m)
        r.error(key, m.error().message());
    else if (*m == 0)
        r.error(key, "a signed policy needs at least one PCR (\"11\")");
}

constexpr Field<crypt::TpmSettings> kTpmFields[] = {
    {{"encrypted_device", K::string, "the LUKS2 partition upgrades keep TPM2 tokens for"},
     &read::checked<&crypt::TpmSettings::encrypted_device, &absolute_path>},
    {{"device", K::string, "TCTI (device:/dev/tpmrm0, swtpm:host=H,port=P, auto)"},
     &read::checked<&crypt::TpmSettings::device, &tcti>},
    {{"pcrs", K::string, "PCRs keys are sealed to (\"7\", \"7,14\")"}, &tpm_pcrs},
    {{"pcr_bank", K::string, "sha256 or sha1"}, &tpm_bank},
    {{"public_key", K::string,
      "PEM public key of a signed PCR policy for new tokens (systemd's --tpm2-public-key)"},
     &read::checked<&crypt::TpmSettings::public_key, &optional_absolute_path>},
    {{"public_key_pcrs", K::string, "PCRs the signed policy covers (default \"11\")"},
     &tpm_key_pcrs},
    {{"signature", K::string,
      "tpm2-pcr-signature.json of this boot (default: /run/systemd, /.extra, ...)"},
     &read::checked<&crypt::TpmSettings::signature, &optional_absolute_path>},
    {{"recovery_key_command", K::string, "gets a new recovery key on stdin (sh -c)"},
     &read::value<&crypt::TpmSettings::recovery_key_command>},
    {{"recovery_key_timeout", K::duration,
      "how long boot waits for the recovery key when the TPM fails (0: for ever; default 5m); "
      "then it boots for recovery"},
     &read::value<&crypt::TpmSettings::recovery_key_timeout>},
};
constexpr Table<crypt::TpmSettings> kTpm{"tpm", "TPM2 sealing", Severity::error, kTpmFields};

std::string_view oem_device(const std::string& s) {
    return s.empty() || is_absolute_path(s) ? "" : "expected an absolute path, or \"\" for no /oem";
}

void mount_etc(const MapReader& r, std::string_view key, mount::Settings& m, DecodeContext&) {
    std::string etc;
    if (!r.read(key, etc)) return;
    if (etc == "persistent")
        m.etc = mount::EtcMode::persistent;
    else if (etc == "tmpfs")
        m.etc = mount::EtcMode::tmpfs;
    else
        r.error(key, "expected persistent or tmpfs, not '" + etc + "'");
}

void persistent_paths(const MapReader& r, std::string_view key, mount::Settings& m,
                      DecodeContext&) {
    if (r.read(key, m.persistent_paths))
        for (const auto& problem : mount::check_persistent_paths(m.persistent_paths))
            r.error(key, problem);
}

constexpr Field<mount::Settings> kMountFields[] = {
    {{"device", K::string, "the persistent partition"},
     &read::checked<&mount::Settings::device, &absolute_path>},
    {{"oem_device", K::string, "the OEM partition (\"\": no /oem)"},
     &read::checked<&mount::Settings::oem_device, &oem_device>},
    {{"etc", K::string, "where /etc changes go: persistent or tmpfs"}, &mount_etc},
    {{"persistent_paths", K::strings, "paths kept on the persistent partition"}, &persistent_paths},
    {{"device_timeout", K::duration, "how long to wait for the devices"},
     &read::value<&mount::Settings::device_timeout>},
};
constexpr Table<mount::Settings> kMount{"mount", "The root the initramfs assembles",
                                        Severity::error, kMountFields};

void log_level(const MapReader& r, std::string_view key, AgentSettings& s, DecodeContext&) {
    if (r.read(key, s.log_level))
        if (auto level = log::parse_level(s.log_level); !level)
            r.error(key, level.error().message());
}

constexpr Field<AgentSettings> kAgentFields[] = {
    {{"log_level", K::string, "trace, debug, info, warning, error, critical or off"}, &log_level},
    {{"disk", K::string, "the disk holding the Ballast partitions (default: by label)"},
     &read::checked<&AgentSettings::disk, &absolute_path>},
    {{"reconcile", K::block, "re-applying the config", "reconcile"},
     &read::block<&AgentSettings::reconcile, kReconcile>},
    {{"http", K::block, "downloads", "http"}, &read::block<&AgentSettings::http, kHttp>},
    {{"update", K::block, "A/B updates", "update"}, &read::block<&AgentSettings::update, kUpdate>},
    {{"health", K::block, "boot assessment", "health"},
     &read::block<&AgentSettings::health, kAgentHealth>},
    {{"k3s", K::block, "k3s", "k3s"}, &read::block<&AgentSettings::k3s, kAgentK3s>},
    {{"tpm", K::block, "TPM2 sealing", "tpm"}, &read::block<&AgentSettings::tpm, kTpm>},
    {{"mount", K::block, "the root the initramfs assembles", "mount"},
     &read::block<&AgentSettings::mount, kMount>},
};
constexpr Table<AgentSettings> kAgent{"agent", "Ballast's own settings (/etc/ballast/agent.yaml)",
                                      Severity::error, kAgentFields};

}  // namespace

std::vector<BlockInfo> agent_settings_blocks() {
    return {describe(kAgent),       describe(kReconcile), describe(kHttp), describe(kUpdate),
            describe(kAgentHealth), describe(kAgentK3s),  describe(kTpm),  describe(kMount)};
}

Result<AgentSettings> parse_agent_settings(std::string_view text, std::string_view file_name) {
    Diagnostics diags;
    auto root = BALLAST_TRY(parse_tree(text, file_name, diags));
    const nlohmann::json no_facts = nlohmann::json::object();
    DecodeContext ctx{no_facts, diags};
    AgentSettings s;
    kAgent.decode(MapReader(&root, diags, ""), s, ctx);
    if (diags.has_errors()) return fail(Errc::invalid_argument, diags.errors_text());
    return s;
}

Result<AgentSettings> load_agent_settings(const std::filesystem::path& path, bool must_exist) {
    auto text = read_file(path, 1u << 20);
    if (!text) {
        if (text.error().sys_errno() == ENOENT && !must_exist) return AgentSettings{};
        return std::unexpected(std::move(text.error()).context("agent settings"));
    }
    return parse_agent_settings(*text, path.string());
}

}  // namespace ballast::config
