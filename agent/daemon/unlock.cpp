// ballast-agent unlock: opens the encrypted persistent partition at boot (dracut module, early
// unit). The TPM first; when it cannot (no TPM, changed PCRs, lockout, wrong PIN) the reason goes
// to the console and the recovery key is asked for: never a silent hang.
#include <chrono>
#include <cstdio>

#include <spdlog/spdlog.h>

#include "ballast/core/json.hpp"
#include "ballast/crypt/ask.hpp"
#include "ballast/crypt/keys.hpp"
#include "ballast/crypt/recovery_key.hpp"
#include "oneshot.hpp"

namespace ballast::agent {
namespace {

constexpr int kRecoveryAttempts = 3;

struct Opened {
    std::string method;
    int keyslot = -1;
    uint64_t tpm_commands = 0;
};

Status open_with(crypt::Luks& luks, const UnlockRequest& req, std::string_view passphrase,
                 int keyslot) {
    if (req.name.empty()) {
        BALLAST_TRY(luks.check_passphrase(passphrase, keyslot));
        return {};
    }
    return luks.activate(req.name, passphrase, keyslot);
}

Result<Opened> by_tpm(crypt::Luks& luks, const UnlockRequest& req, const std::string& tcti) {
    crypt::Tpm2 tpm = BALLAST_TRY(crypt::Tpm2::open(tcti));
    auto unlocked = crypt::unlock_tpm2(
        luks, tpm,
        [&] { return crypt::ask_secret(fmt::format("TPM2 PIN for {}", req.device), "PIN"); },
        [&](int keyslot, std::string_view pass) { return open_with(luks, req, pass, keyslot); });
    if (!unlocked) return std::unexpected(std::move(unlocked).error());
    return Opened{"tpm2", unlocked->keyslot, tpm.commands()};
}

Result<Opened> by_recovery_key(crypt::Luks& luks, const UnlockRequest& req) {
    const bool from_env = std::getenv("PASSWORD") != nullptr;
    for (int attempt = 1; attempt <= kRecoveryAttempts; ++attempt) {
        auto key = crypt::ask_secret(fmt::format("Recovery key for {}", req.device), "PASSWORD");
        if (!key) return fail(Errc::permission_denied, "no recovery key given");
        auto vk = crypt::volume_key_from_passphrase(luks, *key);
        if (vk) {
            auto normal = crypt::normalize_recovery_key(*key);
            const std::string& pass = normal ? *normal : *key;
            auto slot = luks.check_passphrase(pass);
            ::explicit_bzero(key->data(), key->size());
            if (!slot) return std::unexpected(std::move(slot).error());
            BALLAST_TRY(open_with(luks, req, pass, *slot));
            return Opened{"recovery-key", *slot, 0};
        }
        std::fprintf(stderr, "ballast: %s: that key does not open it (%d of %d)\n",
                     req.device.c_str(), attempt, kRecoveryAttempts);
        if (from_env) break;  // the same wrong value again would not help
    }
    return fail(Errc::permission_denied, "no recovery key opened it");
}

Result<Opened> unlock(const config::AgentSettings& settings, const UnlockRequest& req) {
    auto luks = BALLAST_TRY(crypt::Luks::open(req.device));
    const std::string tcti = req.tpm2_device.empty() ? settings.tpm.device : req.tpm2_device;
    auto opened = by_tpm(luks, req, tcti);
    if (!opened) {
        // On the console, so whoever is at the machine knows why the key is asked for.
        std::fprintf(stderr, "ballast: %s: %s\nballast: enter the recovery key to continue.\n",
                     req.device.c_str(), opened.error().what().c_str());
        spdlog::warn("unlock {}: {}", req.device, opened.error().what());
        opened = by_recovery_key(luks, req);
    }
    if (!opened) return std::unexpected(std::move(opened).error().context(req.device));
    return opened;
}

}  // namespace

Result<std::string> unlock_device(const config::AgentSettings& settings, const UnlockRequest& req) {
    auto opened = BALLAST_TRY(unlock(settings, req));
    return opened.method;
}

int run_unlock_mode(const NodeOptions& node, const UnlockRequest& req, bool json) {
    auto start = std::chrono::steady_clock::now();
    auto settings = config::load_agent_settings(node.settings_path, node.settings_explicit);
    if (!settings) return report_failure("unlock", settings.error(), json);
    auto opened = unlock(*settings, req);
    if (!opened) return report_failure("unlock", opened.error(), json);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - start)
                  .count();
    spdlog::info("unlocked {} with {} (keyslot {}) in {} ms", req.device, opened->method,
                 opened->keyslot, ms);
    if (json)
        std::printf("%s\n", json_text(nlohmann::json{{"ok", true},
                                                     {"device", req.device},
                                                     {"name", req.name},
                                                     {"method", opened->method},
                                                     {"keyslot", opened->keyslot},
                                                     {"tpm_commands", opened->tpm_commands},
                                                     {"ms", ms}})
                                .c_str());
    return 0;
}

}  // namespace ballast::agent
