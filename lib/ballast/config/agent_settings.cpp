#include "ballast/config/agent_settings.hpp"

#include <cerrno>
#include <system_error>

#include "ballast/config/reader.hpp"
#include "ballast/config/tree.hpp"
#include "ballast/core/atomic_file.hpp"
#include "ballast/core/log.hpp"
#include "ballast/core/text.hpp"
#include "ballast/crypt/pcr.hpp"

namespace ballast::config {

namespace {

// reconcile: and http:
void read_reconcile_http(MapReader& top, AgentSettings& s) {
    auto rec = top.sub("reconcile");
    rec.check_keys({"interval", "delay"}, Severity::error);
    rec.read("interval", s.reconcile.interval);
    rec.read("delay", s.reconcile.delay);
    if (s.reconcile.interval.count() != 0 && s.reconcile.interval < std::chrono::minutes(1))
        rec.error("interval", "must be 0 (never) or at least 1m");
    auto http = top.sub("http");
    http.check_keys({"ca_file", "proxy"}, Severity::error);
    if (http.read("ca_file", s.http.ca_file) && !is_absolute_path(s.http.ca_file))
        http.error("ca_file", "expected an absolute path");
    http.read("proxy", s.http.proxy);
}

void read_update(MapReader& top, AgentSettings& s) {
    auto up = top.sub("update");
    up.check_keys({"compatible", "keyring", "tries"}, Severity::error);
    up.read("compatible", s.update.compatible);
    if (up.read("keyring", s.update.keyring) && !is_absolute_path(s.update.keyring))
        up.error("keyring", "expected an absolute path");
    up.read("tries", s.update.tries, 1, 9);
}

void read_health(MapReader& top, health::Settings& hs) {
    auto h = top.sub("health");
    h.check_keys({"units", "commands", "deadline", "interval"}, Severity::error);
    h.read("units", hs.units);
    h.read("commands", hs.commands);
    h.read("deadline", hs.deadline);
    h.read("interval", hs.interval);
    if (hs.deadline < std::chrono::seconds(1)) h.error("deadline", "must be at least 1s");
    if (hs.interval < std::chrono::milliseconds(100)) h.error("interval", "must be at least 100ms");
}

void read_k3s(MapReader& top, AgentSettings& s) {
    auto k = top.sub("k3s");
    k.check_keys({"binary_url", "binary_sha256", "readiness_deadline"}, Severity::error);
    k.read("binary_url", s.k3s.binary_url);
    k.read("binary_sha256", s.k3s.binary_sha256);
    k.read("readiness_deadline", s.k3s.readiness_deadline);
    if (!s.k3s.binary_url.empty() && !is_https_url(s.k3s.binary_url))
        k.error("binary_url", "expected an https:// URL");
    if (!s.k3s.binary_url.empty() && !is_sha256_hex(s.k3s.binary_sha256))
        k.error("binary_sha256", "a k3s artifact needs its sha256 (64 lower-case hex digits)");
}

void read_tpm(MapReader& top, crypt::TpmSettings& tpm) {
    auto t = top.sub("tpm");
    t.check_keys({"device", "pcrs", "pcr_bank", "recovery_key_command", "encrypted_device"},
                 Severity::error);
    if (t.read("encrypted_device", tpm.encrypted_device) && !is_absolute_path(tpm.encrypted_device))
        t.error("encrypted_device", "expected an absolute path");
    if (t.read("device", tpm.device) && tpm.device.find(':') == std::string::npos &&
        tpm.device != "auto")
        t.error("device", "expected a TCTI such as device:/dev/tpmrm0 or swtpm:host=H,port=P");
    if (t.read("pcrs", tpm.pcrs))
        if (auto m = crypt::parse_pcr_list(tpm.pcrs); !m) t.error("pcrs", m.error().message());
    if (t.read("pcr_bank", tpm.pcr_bank))
        if (auto b = crypt::parse_pcr_bank(tpm.pcr_bank); !b)
            t.error("pcr_bank", b.error().message());
    t.read("recovery_key_command", tpm.recovery_key_command);
}

void read_mount(MapReader& top, mount::Settings& ms) {
    auto m = top.sub("mount");
    m.check_keys({"device", "oem_device", "etc", "persistent_paths", "device_timeout"},
                 Severity::error);
    if (m.read("device", ms.device) && !is_absolute_path(ms.device))
        m.error("device", "expected an absolute path");
    if (m.read("oem_device", ms.oem_device) && !ms.oem_device.empty() &&
        !is_absolute_path(ms.oem_device))
        m.error("oem_device", "expected an absolute path, or \"\" for no /oem");
    if (std::string etc; m.read("etc", etc)) {
        if (etc == "persistent")
            ms.etc = mount::EtcMode::persistent;
        else if (etc == "tmpfs")
            ms.etc = mount::EtcMode::tmpfs;
        else
            m.error("etc", "expected persistent or tmpfs, not '" + etc + "'");
    }
    if (m.read("persistent_paths", ms.persistent_paths))
        for (const auto& problem : mount::check_persistent_paths(ms.persistent_paths))
            m.error("persistent_paths", problem);
    m.read("device_timeout", ms.device_timeout);
}

}  // namespace

Result<AgentSettings> parse_agent_settings(std::string_view text, std::string_view file_name) {
    Diagnostics diags;
    auto root = BALLAST_TRY(parse_tree(text, file_name, diags));
    MapReader top(&root, diags, "");
    top.check_keys(
        {"log_level", "disk", "reconcile", "http", "update", "health", "k3s", "tpm", "mount"},
        Severity::error);

    AgentSettings s;
    if (top.read("log_level", s.log_level))
        if (auto lvl = log::parse_level(s.log_level); !lvl)
            top.error("log_level", lvl.error().message());
    if (top.read("disk", s.disk) && !is_absolute_path(s.disk))
        top.error("disk", "expected an absolute path");
    read_reconcile_http(top, s);
    read_update(top, s);
    read_health(top, s.health);
    read_k3s(top, s);
    read_tpm(top, s.tpm);
    read_mount(top, s.mount);
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
