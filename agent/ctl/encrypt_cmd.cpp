// encrypt: keyslots of the node's encrypted persistent partition, on the node, as root (like
// systemd-cryptenroll: it needs the TPM and the device, not the daemon).
#include <cstdio>

#include "ballast/config/agent_settings.hpp"
#include "ballast/core/atomic_file.hpp"
#include "ballast/core/root.hpp"
#include "ballast/crypt/ask.hpp"
#include "ballast/crypt/keys.hpp"
#include "ballast/crypt/pcr_signature_file.hpp"
#include "ballast/ops/escrow.hpp"
#include "ctl.hpp"

namespace ballast::ctl {
namespace {

struct Context {
    config::AgentSettings settings;
    std::string device;
    std::string tcti;
    // Of this boot, for signed tokens. A damaged file only matters to signed tokens, so it is
    // an error only where one is used.
    Result<crypt::PcrSignatureFile> signatures;
};

Result<Context> context(const GlobalOptions& g, const EncryptOptions& o) {
    RootPrefix root(std::filesystem::absolute(g.root));
    Context c;
    c.settings =
        BALLAST_TRY(config::load_agent_settings(root(config::kDefaultAgentSettingsPath), false));
    c.device = !o.device.empty() ? o.device : std::string(kPersistentDevice);
    c.tcti = !o.tpm2_device.empty() ? o.tpm2_device : c.settings.tpm.device;
    c.signatures =
        crypt::load_pcr_signatures(!o.signature.empty() ? o.signature : c.settings.tpm.signature);
    return c;
}

// The volume key, from --unlock-key-file (a recovery key or passphrase) or else the TPM.
Result<SecretBytes> volume_key(crypt::Luks& luks, const Context& c, const EncryptOptions& o) {
    if (!o.unlock_key_file.empty()) {
        std::string key = BALLAST_TRY_CTX(read_file(o.unlock_key_file, 4096), "--unlock-key-file");
        while (!key.empty() && (key.back() == '\n' || key.back() == '\r'))
            key.pop_back();
        auto vk = crypt::volume_key_from_passphrase(luks, key);
        ::explicit_bzero(key.data(), key.size());
        return with_context(std::move(vk), "--unlock-key-file " + o.unlock_key_file);
    }
    crypt::Tpm2 tpm = BALLAST_TRY(crypt::Tpm2::open(c.tcti));
    auto unlocked = crypt::unlock_tpm2(
        luks, tpm, [] { return crypt::ask_secret("TPM2 PIN", "PIN"); }, {},
        c.signatures ? &*c.signatures : nullptr);
    if (!unlocked && !c.signatures)
        unlocked.error().context(fmt::format("(PCR signatures: {})", c.signatures.error().what()));
    if (!unlocked)
        return std::unexpected(std::move(unlocked).error().context(
            "unlock (give a recovery key with --unlock-key-file)"));
    return luks.volume_key(crypt::as_view(unlocked->passphrase));
}

struct Policy {
    crypt::PcrBank bank;
    crypt::PcrMask pcrs;
    std::optional<crypt::PcrPublicKey> key;  // a signed policy
    crypt::PcrMask key_pcrs = 0;
};

Result<Policy> policy(const Context& c, const EncryptOptions& o) {
    Policy p{};
    const std::string& key = !o.public_key.empty() ? o.public_key : c.settings.tpm.public_key;
    if (!key.empty()) {
        std::string pem = BALLAST_TRY_CTX(read_file(key, 64u << 10), "--tpm2-public-key");
        p.key = BALLAST_TRY_CTX(crypt::parse_pcr_public_key(pem, key), "--tpm2-public-key");
        const std::string& pcrs =
            !o.public_key_pcrs.empty() ? o.public_key_pcrs : c.settings.tpm.public_key_pcrs;
        p.key_pcrs = BALLAST_TRY_CTX(crypt::parse_pcr_list(pcrs), "--tpm2-public-key-pcrs");
        if (p.key_pcrs == 0)
            return fail(Errc::invalid_argument,
                        "--tpm2-public-key-pcrs: a signed policy needs at least one PCR");
    } else if (!o.public_key_pcrs.empty()) {
        return fail(Errc::invalid_argument,
                    "--tpm2-public-key-pcrs: needs --tpm2-public-key (or tpm.public_key)");
    }
    p.bank = BALLAST_TRY_CTX(
        crypt::parse_pcr_bank(o.pcr_bank.empty() ? c.settings.tpm.pcr_bank : o.pcr_bank),
        "--pcr-bank");
    p.pcrs = BALLAST_TRY_CTX(crypt::parse_pcr_list(o.pcrs.empty() ? c.settings.tpm.pcrs : o.pcrs),
                             "--pcrs");
    return p;
}

Result<std::optional<std::string>> new_pin(const EncryptOptions& o) {
    if (!o.pin) return std::nullopt;
    auto pin = crypt::ask_secret("New TPM2 PIN", "NEWPIN");
    if (!pin || pin->empty())
        return fail(Errc::invalid_argument, "--pin: no PIN given (set NEWPIN or use a terminal)");
    return pin;
}

// Enrolls for the current PCRs and drops the TPM tokens this one replaces: same PCRs, bank and
// PIN use, a policy that no longer matches.
Result<crypt::Enrolled> enroll(crypt::Luks& luks, const SecretBytes& vk, const Context& c,
                               const EncryptOptions& o, bool replace) {
    Policy p = BALLAST_TRY(policy(c, o));
    auto pin = BALLAST_TRY(new_pin(o));
    crypt::Tpm2 tpm = BALLAST_TRY(crypt::Tpm2::open(c.tcti));
    crypt::SignedPcrs signer{p.key ? &*p.key : nullptr, p.key_pcrs, {}, {}};
    if (p.key) {
        if (!c.signatures) return std::unexpected(c.signatures.error());
        signer.signatures = c.signatures->entries;
        signer.source = c.signatures->path;
    }
    auto e = BALLAST_TRY(
        crypt::enroll_tpm2(luks, vk, tpm, p.bank, p.pcrs, pin, p.key ? &signer : nullptr));
    if (replace)
        for (int slot : BALLAST_TRY(crypt::stale_tpm2_keyslots(luks, e.token)))
            BALLAST_TRY(crypt::wipe_slot(luks, slot));
    return e;
}

void print_enrolled(const GlobalOptions& g, const crypt::Enrolled& e, const char* verb) {
    if (g.json)
        print_json({{"keyslot", e.keyslot},
                    {"token", e.token},
                    {"already", e.already},
                    {"tested", e.tested}});
    else if (e.already)
        std::printf("already enrolled: keyslot %d, token %d has this policy\n", e.keyslot, e.token);
    else
        std::printf("%s: keyslot %d, token %d\n", verb, e.keyslot, e.token);
    if (!e.tested && !g.json)
        std::printf(
            "not tested: no signature for the current PCR values; it opens at a boot "
            "whose signed PCRs it was signed for\n");
}

int status(const GlobalOptions& g, crypt::Luks& luks, const Context& c) {
    auto tpm = crypt::Tpm2::open(c.tcti);
    nlohmann::json j = crypt::describe(luks, tpm ? &*tpm : nullptr);
    if (!tpm) j["tpm_error"] = tpm.error().what();
    if (g.json) {
        print_json(j);
        return kExitOk;
    }
    std::printf("%s (LUKS2, %s)\n", j["device"].get<std::string>().c_str(),
                j["uuid"].get<std::string>().c_str());
    std::printf("  Keyslots:\n");
    for (const auto& k : j["keyslots"])
        std::printf(
            "    %d  %-10s %s%s\n", k["keyslot"].get<int>(), k["kind"].get<std::string>().c_str(),
            k["pbkdf"].get<std::string>().c_str(),
            k.contains("token") ? fmt::format("  token {}", k["token"].get<int>()).c_str() : "");
    for (const auto& t : j["tokens"]) {
        if (t["type"] != "systemd-tpm2") continue;
        std::string pcrs;
        for (const auto& p : t.value("pcrs", nlohmann::json::array()))
            pcrs += (pcrs.empty() ? "" : ",") + std::to_string(p.get<int>());
        std::string signed_pcrs;
        for (const auto& p : t.value("signed_pcrs", nlohmann::json::array()))
            signed_pcrs +=
                (signed_pcrs.empty() ? " + signed " : ",") + std::to_string(p.get<int>());
        std::printf("  TPM2 token %d: %s:%s%s%s, %s\n", t["id"].get<int>(),
                    t.value("pcr_bank", "?").c_str(), pcrs.c_str(), signed_pcrs.c_str(),
                    t.value("pin", false) ? " + PIN" : "",
                    t.contains("error")                 ? t["error"].get<std::string>().c_str()
                    : t.contains("signed_pcrs")         ? "signed policy (checked when it unseals)"
                    : !t.contains("policy_satisfied")   ? "policy not checked (no TPM)"
                    : t["policy_satisfied"].get<bool>() ? "current PCRs satisfy the policy"
                                                        : "current PCRs do NOT satisfy the policy");
    }
    if (j.contains("tpm")) {
        const auto& t = j["tpm"];
        std::printf("  TPM: %s", t["device"].get<std::string>().c_str());
        if (t.contains("lockout"))
            std::printf(", %s, %u/%u failed tries",
                        t["lockout"]["in_lockout"].get<bool>() ? "IN LOCKOUT" : "not in lockout",
                        t["lockout"]["failed_tries"].get<unsigned>(),
                        t["lockout"]["max_tries"].get<unsigned>());
        std::printf("\n");
    } else {
        std::printf("  TPM: %s\n", j["tpm_error"].get<std::string>().c_str());
    }
    return kExitOk;
}

}  // namespace

Status hand_out_recovery_key(const GlobalOptions& g, const config::AgentSettings& settings,
                             int keyslot, const std::string& key, bool print_json_doc) {
    Status sent = ops::escrow_recovery_key(settings, key);
    if (!sent) sent = fail(Errc::failed, "{}; write down the key shown", sent.error().what());
    if (!g.json)
        std::printf("New recovery key (keyslot %d), shown only this once:\n\n    %s\n\n", keyslot,
                    key.c_str());
    else if (print_json_doc)
        print_json({{"keyslot", keyslot}, {"recovery_key", key}});
    std::fflush(stdout);
    return sent;
}

int cmd_encrypt(const GlobalOptions& g, const std::string& verb, const EncryptOptions& o) {
    auto c = context(g, o);
    if (!c) return report_error(c.error());
    auto luks = crypt::Luks::open(c->device);
    if (!luks) return report_error(luks.error());
    if (verb == "status") return status(g, *luks, *c);
    if (verb == "wipe-slot") {
        if (auto st = crypt::wipe_slot(*luks, o.slot); !st)
            return report_error(st.error().context(fmt::format("wipe-slot {}", o.slot)));
        if (!g.json) std::printf("keyslot %d removed\n", o.slot);
        return kExitOk;
    }
    auto vk = volume_key(*luks, *c, o);
    if (!vk) return report_error(vk.error());
    if (verb == "enroll" || verb == "reseal") {
        auto e = enroll(*luks, *vk, *c, o, verb == "reseal");
        if (!e) return report_error(e.error().context(verb));
        print_enrolled(g, *e, verb == "enroll" ? "enrolled" : "resealed");
        return kExitOk;
    }
    // recovery-key
    auto k = crypt::enroll_recovery_key(*luks, *vk);
    if (!k) return report_error(k.error().context("recovery-key"));
    Status sent = hand_out_recovery_key(g, c->settings, k->keyslot, k->key, true);
    // The old keys go only once the new one is surely somewhere: escrowed and on stdout.
    if (sent && (std::ferror(stdout) || std::fflush(stdout) != 0))
        sent = fail(Errc::io, "the new recovery key could not be written to stdout");
    if (!sent) {
        if (o.replace) sent.error().context("recovery-key --replace: the old keys are kept");
        return report_error(sent.error());
    }
    if (o.replace)
        for (const crypt::Slot& s : crypt::classify(luks->keyslots(), luks->tokens()))
            if (s.kind == crypt::SlotKind::recovery && s.keyslot != k->keyslot)
                if (auto st = crypt::wipe_slot(*luks, s.keyslot); !st)
                    return report_error(st.error().context("recovery-key --replace"));
    return kExitOk;
}

}  // namespace ballast::ctl
