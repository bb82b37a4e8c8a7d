#include "ballast/ops/unlock.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <spdlog/spdlog.h>

#include "ballast/crypt/ask.hpp"
#include "ballast/crypt/keys.hpp"
#include "ballast/crypt/pcr_signature_file.hpp"
#include "ballast/crypt/recovery_key.hpp"

namespace ballast::ops {
namespace {

constexpr int kRecoveryAttempts = 3;

Status open_with(crypt::Luks& luks, const UnlockRequest& req, std::string_view passphrase,
                 int keyslot) {
    if (req.name.empty()) {
        BALLAST_TRY(luks.check_passphrase(passphrase, keyslot));
        return {};
    }
    return luks.activate(req.name, passphrase, keyslot);
}

Result<UnlockReport> by_tpm(crypt::Luks& luks, const UnlockRequest& req, const std::string& tcti,
                            const std::string& signature_path) {
    crypt::Tpm2 tpm = BALLAST_TRY(crypt::Tpm2::open(tcti));
    // A damaged signature file must not stop the tokens that need none: it becomes a reason.
    auto signatures = crypt::load_pcr_signatures(signature_path);
    auto unlocked = crypt::unlock_tpm2(
        luks, tpm,
        [&] { return crypt::ask_secret(fmt::format("TPM2 PIN for {}", req.device), "PIN"); },
        [&](int keyslot, std::string_view pass) { return open_with(luks, req, pass, keyslot); },
        signatures ? &*signatures : nullptr);
    if (!unlocked && !signatures)
        return std::unexpected(std::move(unlocked).error().context(
            fmt::format("(PCR signatures: {})", signatures.error().what())));
    if (!unlocked) return std::unexpected(std::move(unlocked).error());
    UnlockReport r;
    r.method = "tpm2";
    r.keyslot = unlocked->keyslot;
    r.tpm_commands = tpm.commands();
    return r;
}

Result<UnlockReport> by_recovery_key(crypt::Luks& luks, const UnlockRequest& req,
                                     std::chrono::seconds timeout) {
    const bool from_env = std::getenv("PASSWORD") != nullptr;
    for (int attempt = 1; attempt <= kRecoveryAttempts; ++attempt) {
        auto key =
            crypt::ask_secret(fmt::format("Recovery key for {}", req.device), "PASSWORD", timeout);
        if (!key)
            return fail(Errc::permission_denied, "no recovery key given{}",
                        timeout.count()
                            ? fmt::format(" (nobody answered within {} s)", timeout.count())
                            : "");
        auto vk = crypt::volume_key_from_passphrase(luks, *key);
        if (vk) {
            auto normal = crypt::normalize_recovery_key(*key);
            const std::string& pass = normal ? *normal : *key;
            auto slot = luks.check_passphrase(pass);
            ::explicit_bzero(key->data(), key->size());
            if (!slot) return std::unexpected(std::move(slot).error());
            BALLAST_TRY(open_with(luks, req, pass, *slot));
            UnlockReport r;
            r.method = "recovery-key";
            r.keyslot = *slot;
            return r;
        }
        std::fprintf(stderr, "ballast: %s: that key does not open it (%d of %d)\n",
                     req.device.c_str(), attempt, kRecoveryAttempts);
        if (from_env) break;  // the same wrong value again would not help
    }
    return fail(Errc::permission_denied, "no recovery key opened it");
}

}  // namespace

nlohmann::json UnlockReport::to_json() const {
    return {{"ok", true},       {"device", device},   {"name", name},
            {"method", method}, {"keyslot", keyslot}, {"tpm_commands", tpm_commands},
            {"ms", ms}};
}

Result<UnlockReport> unlock(const config::AgentSettings& settings, const UnlockRequest& req) {
    const auto start = std::chrono::steady_clock::now();
    auto luks = BALLAST_TRY(crypt::Luks::open(req.device));
    const std::string tcti = req.tpm2_device.empty() ? settings.tpm.device : req.tpm2_device;
    auto opened = by_tpm(luks, req, tcti,
                         req.tpm2_signature.empty() ? settings.tpm.signature : req.tpm2_signature);
    if (!opened) {
        // On the console, so whoever is at the machine knows why the key is asked for.
        std::fprintf(stderr, "ballast: %s: %s\nballast: enter the recovery key to continue.\n",
                     req.device.c_str(), opened.error().what().c_str());
        spdlog::warn("unlock {}: {}", req.device, opened.error().what());
        opened = by_recovery_key(
            luks, req, std::chrono::ceil<std::chrono::seconds>(settings.tpm.recovery_key_timeout));
    }
    if (!opened) return std::unexpected(std::move(opened).error().context(req.device));
    opened->device = req.device;
    opened->name = req.name;
    opened->ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - start)
                     .count();
    return opened;
}

}  // namespace ballast::ops
