#include "ballast/crypt/tpm2.hpp"

#include <unistd.h>

#include <cstring>

#include "ballast/core/encoding.hpp"
#include "ballast/core/sha256.hpp"
#include "ballast/crypt/tss.hpp"

namespace ballast::crypt {

Result<std::string> resolve_tcti(std::string_view tcti) {
    if (!tcti.empty() && tcti != "auto") {
        if (tcti.find(':') == std::string_view::npos)
            return fail(Errc::invalid_argument,
                        "TPM device '{}' is not a TCTI (driver:options, e.g. "
                        "device:/dev/tpmrm0 or swtpm:host=127.0.0.1,port=2321)",
                        tcti);
        return std::string(tcti);
    }
    if (::access("/dev/tpmrm0", F_OK) == 0) return std::string("device:/dev/tpmrm0");
    return fail(Errc::unavailable,
                "no TPM2 found (no /dev/tpmrm0); set tpm.device in agent.yaml or --tpm2-device");
}

struct Tpm2::State {
    const tss::Api* api = nullptr;
    TSS2_TCTI_CONTEXT* tcti = nullptr;
    ESYS_CONTEXT* esys = nullptr;
    uint64_t commands = 0;

    ~State() {
        if (esys) api->Esys_Finalize(&esys);
        if (tcti) api->Tss2_TctiLdr_Finalize(&tcti);
    }

    // Counts one TPM command and turns its response code into an Error naming `what`.
    Status check(TSS2_RC rc, std::string_view what) {
        ++commands;
        if (rc == TSS2_RC_SUCCESS) return {};
        TSS2_RC base = tss::base_rc(rc);
        if (base == TPM2_RC_LOCKOUT)
            return fail(Errc::busy,
                        "{}: the TPM is in dictionary-attack lockout (too many wrong PINs); it "
                        "recovers by itself after its recovery time, or clear it with the "
                        "lockout authorization",
                        what);
        if (base == TPM2_RC_AUTH_FAIL || base == TPM2_RC_BAD_AUTH)
            return fail(Errc::permission_denied, "{}: wrong PIN", what);
        if (base == TPM2_RC_POLICY_FAIL || base == TPM2_RC_PCR_CHANGED)
            return fail(Errc::verification, "{}: the PCR values do not satisfy the policy", what);
        return fail(Errc::failed, "{}: {}", what, api->Tss2_RC_Decode(rc));
    }
};

namespace {

// A transient object or session, flushed when released.
class Handle {
  public:
    Handle() = default;
    Handle(Tpm2::State* s, ESYS_TR tr, bool flush = true) : s_(s), tr_(tr), flush_(flush) {}
    Handle(Handle&& o) noexcept
        : s_(std::exchange(o.s_, nullptr)),
          tr_(std::exchange(o.tr_, ESYS_TR_NONE)),
          flush_(o.flush_) {}
    Handle& operator=(Handle&& o) noexcept {
        std::swap(s_, o.s_);
        std::swap(tr_, o.tr_);
        std::swap(flush_, o.flush_);
        return *this;
    }
    ~Handle() {
        if (!s_ || tr_ == ESYS_TR_NONE) return;
        // Persistent objects (a deserialized SRK) are only forgotten, never flushed.
        if (flush_) {
            ++s_->commands;
            (void)s_->api->Esys_FlushContext(s_->esys, tr_);
        } else {
            (void)s_->api->Esys_TR_Close(s_->esys, &tr_);
        }
    }
    [[nodiscard]] ESYS_TR get() const noexcept { return tr_; }

  private:
    Tpm2::State* s_ = nullptr;
    ESYS_TR tr_ = ESYS_TR_NONE;
    bool flush_ = true;
};

template <class T>
struct EsysFree {
    const tss::Api* api;
    void operator()(T* p) const { api->Esys_Free(p); }
};
template <class T>
using EsysPtr = std::unique_ptr<T, EsysFree<T>>;

TPMT_SYM_DEF_OBJECT aes128_cfb() {
    TPMT_SYM_DEF_OBJECT s{};
    s.algorithm = TPM2_ALG_AES;
    s.keyBits.aes = 128;
    s.mode.aes = TPM2_ALG_CFB;
    return s;
}

// systemd 252's primary templates (tpm2_make_primary); ECC is byte-identical to
// `tpm2_createprimary -C o -g sha256 -G ecc`.
TPM2B_PUBLIC primary_template(PrimaryAlg alg) {
    TPM2B_PUBLIC t{};
    TPMT_PUBLIC& p = t.publicArea;
    p.nameAlg = TPM2_ALG_SHA256;
    p.objectAttributes = TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT | TPMA_OBJECT_FIXEDTPM |
                         TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                         TPMA_OBJECT_USERWITHAUTH;
    if (alg == PrimaryAlg::ecc) {
        p.type = TPM2_ALG_ECC;
        p.parameters.eccDetail.symmetric = aes128_cfb();
        p.parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
        p.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
        p.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
    } else {
        p.type = TPM2_ALG_RSA;
        p.parameters.rsaDetail.symmetric = aes128_cfb();
        p.parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
        p.parameters.rsaDetail.keyBits = 2048;
    }
    return t;
}

TPML_PCR_SELECTION pcr_selection(PcrBank bank, PcrMask mask) {
    TPML_PCR_SELECTION sel{};
    sel.count = 1;
    sel.pcrSelections[0].hash = tpm_alg_id(bank);
    sel.pcrSelections[0].sizeofSelect = 3;
    for (int i = 0; i < 24; ++i)
        if (mask & (1u << i)) sel.pcrSelections[0].pcrSelect[i / 8] |= uint8_t(1u << (i % 8));
    return sel;
}

}  // namespace

Tpm2::Tpm2(std::unique_ptr<State> s, std::string tcti) : s_(std::move(s)), tcti_(std::move(tcti)) {}
Tpm2::Tpm2(Tpm2&&) noexcept = default;
Tpm2& Tpm2::operator=(Tpm2&&) noexcept = default;
Tpm2::~Tpm2() = default;

uint64_t Tpm2::commands() const noexcept {
    return s_->commands;
}

Result<Tpm2> Tpm2::open(std::string_view tcti_spec) {
    std::string tcti = BALLAST_TRY(resolve_tcti(tcti_spec));
    auto s = std::make_unique<State>();
    s->api = BALLAST_TRY(tss::api());
    if (TSS2_RC rc = s->api->Tss2_TctiLdr_Initialize(tcti.c_str(), &s->tcti); rc != TSS2_RC_SUCCESS)
        return fail(Errc::unavailable, "TPM {}: cannot connect: {}", tcti,
                    s->api->Tss2_RC_Decode(rc));
    if (TSS2_RC rc = s->api->Esys_Initialize(&s->esys, s->tcti, nullptr); rc != TSS2_RC_SUCCESS)
        return fail(Errc::unavailable, "TPM {}: {}", tcti, s->api->Tss2_RC_Decode(rc));
    TSS2_RC rc = s->api->Esys_Startup(s->esys, TPM2_SU_CLEAR);
    ++s->commands;
    if (rc != TSS2_RC_SUCCESS && tss::base_rc(rc) != TPM2_RC_INITIALIZE)
        return fail(Errc::unavailable, "TPM {}: startup: {}", tcti, s->api->Tss2_RC_Decode(rc));
    return Tpm2(std::move(s), std::move(tcti));
}

namespace {

Result<Handle> create_primary(Tpm2::State& s, PrimaryAlg alg) {
    TPM2B_SENSITIVE_CREATE sensitive{};
    TPM2B_PUBLIC tmpl = primary_template(alg);
    TPM2B_DATA outside{};
    TPML_PCR_SELECTION creation_pcr{};
    ESYS_TR h = ESYS_TR_NONE;
    BALLAST_TRY(
        s.check(s.api->Esys_CreatePrimary(s.esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                          ESYS_TR_NONE, &sensitive, &tmpl, &outside, &creation_pcr,
                                          &h, nullptr, nullptr, nullptr, nullptr),
                alg == PrimaryAlg::ecc ? "create ECC primary key" : "create RSA primary key"));
    return Handle(&s, h);
}

// systemd 254+ seals under the persistent SRK and stores its serialized handle in the token.
Result<Handle> deserialize_srk(Tpm2::State& s, std::string_view srk) {
    ESYS_TR h = ESYS_TR_NONE;
    BALLAST_TRY(s.check(s.api->Esys_TR_Deserialize(
                            s.esys, reinterpret_cast<const uint8_t*>(srk.data()), srk.size(), &h),
                        "load the storage root key (tpm2_srk)"));
    --s.commands;  // local to ESAPI
    return Handle(&s, h, false);
}

// Parameter encryption for the secret going in or out, salted by the primary.
Result<Handle> hmac_session(Tpm2::State& s, const Handle& primary, ESYS_TR bind) {
    TPMT_SYM_DEF sym{};
    sym.algorithm = TPM2_ALG_AES;
    sym.keyBits.aes = 128;
    sym.mode.aes = TPM2_ALG_CFB;
    ESYS_TR h = ESYS_TR_NONE;
    BALLAST_TRY(s.check(s.api->Esys_StartAuthSession(s.esys, primary.get(), bind, ESYS_TR_NONE,
                                                     ESYS_TR_NONE, ESYS_TR_NONE, nullptr,
                                                     TPM2_SE_HMAC, &sym, TPM2_ALG_SHA256, &h),
                        "start encryption session"));
    Handle session(&s, h);
    BALLAST_TRY(s.check(
        s.api->Esys_TRSess_SetAttributes(
            s.esys, h, TPMA_SESSION_DECRYPT | TPMA_SESSION_ENCRYPT | TPMA_SESSION_CONTINUESESSION,
            0xff),
        "set session attributes"));
    --s.commands;  // SetAttributes is local to ESAPI
    return session;
}

struct PolicySession {
    Handle session;
    Digest digest{};
};

Result<Digest> session_digest(Tpm2::State& s, ESYS_TR session) {
    TPM2B_DIGEST* raw = nullptr;
    BALLAST_TRY(s.check(s.api->Esys_PolicyGetDigest(s.esys, session, ESYS_TR_NONE, ESYS_TR_NONE,
                                                    ESYS_TR_NONE, &raw),
                        "policy digest"));
    EsysPtr<TPM2B_DIGEST> d(raw, {s.api});
    Digest out{};
    if (d->size != out.size())
        return fail(Errc::failed, "policy digest has {} bytes, not 32", d->size);
    std::memcpy(out.data(), d->buffer, out.size());
    return out;
}

Status add_policy_pcr(Tpm2::State& s, ESYS_TR session, PcrBank bank, PcrMask pcrs) {
    TPML_PCR_SELECTION sel = pcr_selection(bank, pcrs);
    TPM2B_DIGEST none{};
    return s.check(s.api->Esys_PolicyPCR(s.esys, session, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                         &none, &sel),
                   "policy PCR");
}

// The key as TPM2_LoadExternal takes it, from the bytes its name is computed over, so the two
// cannot disagree.
Result<TPM2B_PUBLIC> external_public(Tpm2::State& s, const PcrPublicKey& key, ExponentForm form) {
    std::string bytes = tpmt_public(key, form);
    TPM2B_PUBLIC pub{};
    size_t off = 0;
    if (s.api->Tss2_MU_TPMT_PUBLIC_Unmarshal(reinterpret_cast<const uint8_t*>(bytes.data()),
                                             bytes.size(), &off,
                                             &pub.publicArea) != TSS2_RC_SUCCESS ||
        off != bytes.size())
        return fail(Errc::failed, "the PCR public key does not make a TPMT_PUBLIC");
    return pub;
}

// The ticket that PCR values the key's owner signed may stand for the approved policy: the
// signature for exactly these values (systemd's find_signature), checked by the TPM itself.
Result<EsysPtr<TPMT_TK_VERIFIED>> verify_signature(Tpm2::State& s, const SignedPcrs& signer,
                                                   PcrBank bank, const Digest& approved,
                                                   ExponentForm form) {
    const PcrSignature* sig =
        find_pcr_signature(signer.signatures, bank, signer.pcrs, signer.key->fingerprint, approved);
    if (!sig)
        return fail(Errc::not_found,
                    "no PCR signature by this key for the current values of PCR {} ({}; policy "
                    "{}) {}",
                    format_pcr_list(signer.pcrs), to_string(bank), to_hex(approved),
                    signer.source.empty() ? std::string("(no tpm2-pcr-signature.json found)")
                                          : fmt::format("in {}", signer.source));
    if (sig->signature.size() > sizeof(TPM2B_PUBLIC_KEY_RSA::buffer))
        return fail(Errc::verification, "the PCR signature is {} bytes, too large for RSA",
                    sig->signature.size());
    TPM2B_PUBLIC pub = BALLAST_TRY(external_public(s, *signer.key, form));
    ESYS_TR loaded = ESYS_TR_NONE;
    BALLAST_TRY(s.check(s.api->Esys_LoadExternal(s.esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                                 nullptr, &pub, ESYS_TR_RH_OWNER, &loaded),
                        "load the PCR public key"));
    Handle key(&s, loaded);
    TPM2B_DIGEST hash{};
    auto h = BALLAST_TRY(
        sha256_digest({reinterpret_cast<const char*>(approved.data()), approved.size()}));
    hash.size = uint16_t(h.size());
    std::memcpy(hash.buffer, h.data(), h.size());
    TPMT_SIGNATURE signature{};
    signature.sigAlg = TPM2_ALG_RSASSA;
    signature.signature.rsassa.hash = TPM2_ALG_SHA256;
    signature.signature.rsassa.sig.size = uint16_t(sig->signature.size());
    std::memcpy(signature.signature.rsassa.sig.buffer, sig->signature.data(),
                sig->signature.size());
    TPMT_TK_VERIFIED* ticket = nullptr;
    TSS2_RC rc = s.api->Esys_VerifySignature(s.esys, key.get(), ESYS_TR_NONE, ESYS_TR_NONE,
                                             ESYS_TR_NONE, &hash, &signature, &ticket);
    ++s.commands;
    // Not State::check: a refused signature is a verification failure whatever the TPM's code.
    if (rc != TSS2_RC_SUCCESS)
        return fail(Errc::verification, "the TPM refuses the PCR signature: {}",
                    s.api->Tss2_RC_Decode(rc));
    return EsysPtr<TPMT_TK_VERIFIED>(ticket, {s.api});
}

// systemd 252's order (tpm2_make_policy_session): PolicyPCR over the signed PCRs, whose digest
// is the approved policy, then PolicyAuthorize by the key (which resets the digest to one that
// names only the key), then PolicyPCR over the literal PCRs, then PolicyAuthValue for a PIN.
Status add_policy_authorize(Tpm2::State& s, ESYS_TR session, bool trial, const SignedPcrs& signer,
                            PcrBank bank, ExponentForm form) {
    BALLAST_TRY(add_policy_pcr(s, session, bank, signer.pcrs));
    Digest approved = BALLAST_TRY(session_digest(s, session));
    EsysPtr<TPMT_TK_VERIFIED> ticket(nullptr, {s.api});
    // A trial session checks no ticket: the NULL ticket systemd passes when enrolling.
    TPMT_TK_VERIFIED null_ticket{};
    null_ticket.tag = TPM2_ST_VERIFIED;
    null_ticket.hierarchy = TPM2_RH_OWNER;
    if (!trial) ticket = BALLAST_TRY(verify_signature(s, signer, bank, approved, form));
    std::string name = BALLAST_TRY(tpm_name(*signer.key, form));
    TPM2B_NAME key_name{};
    key_name.size = uint16_t(name.size());
    std::memcpy(key_name.name, name.data(), name.size());
    TPM2B_DIGEST approved_policy{};
    approved_policy.size = uint16_t(approved.size());
    std::memcpy(approved_policy.buffer, approved.data(), approved.size());
    TPM2B_NONCE no_ref{};
    return s.check(s.api->Esys_PolicyAuthorize(s.esys, session, ESYS_TR_NONE, ESYS_TR_NONE,
                                               ESYS_TR_NONE, &approved_policy, &no_ref, &key_name,
                                               ticket ? ticket.get() : &null_ticket),
                   "policy authorize");
}

struct PolicyTerms {
    PcrBank bank = PcrBank::sha256;
    PcrMask pcrs = 0;
    bool pin = false;
    const SignedPcrs* signer = nullptr;
    ExponentForm form = ExponentForm::literal;
};

Result<PolicySession> policy_session(Tpm2::State& s, const Handle& primary, bool trial,
                                     const PolicyTerms& t) {
    TPMT_SYM_DEF sym{};
    sym.algorithm = TPM2_ALG_AES;
    sym.keyBits.aes = 128;
    sym.mode.aes = TPM2_ALG_CFB;
    ESYS_TR h = ESYS_TR_NONE;
    BALLAST_TRY(
        s.check(s.api->Esys_StartAuthSession(
                    s.esys, primary.get(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                    nullptr, trial ? TPM2_SE_TRIAL : TPM2_SE_POLICY, &sym, TPM2_ALG_SHA256, &h),
                "start policy session"));
    PolicySession ps{Handle(&s, h), {}};
    if (t.signer) BALLAST_TRY(add_policy_authorize(s, h, trial, *t.signer, t.bank, t.form));
    if (t.pcrs != 0) BALLAST_TRY(add_policy_pcr(s, h, t.bank, t.pcrs));
    if (t.pin)
        BALLAST_TRY(s.check(
            s.api->Esys_PolicyAuthValue(s.esys, h, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE),
            "policy auth value"));
    ps.digest = BALLAST_TRY(session_digest(s, h));
    return ps;
}

void set_auth(TPM2B_AUTH& out, std::string_view auth) {
    out.size = uint16_t(std::min(auth.size(), sizeof out.buffer));
    std::memcpy(out.buffer, auth.data(), out.size);
}

}  // namespace

Result<Sealed> Tpm2::seal(std::span<const uint8_t> secret, PcrBank bank, PcrMask pcrs,
                          std::optional<std::string_view> pin_auth, const SignedPcrs* signer) {
    State& s = *s_;
    if (secret.size() > sizeof(TPM2B_SENSITIVE_DATA::buffer))
        return fail(Errc::invalid_argument, "secret of {} bytes is too large to seal",
                    secret.size());
    Sealed out;
    auto primary = create_primary(s, PrimaryAlg::ecc);
    if (!primary) {
        // Some TPMs lack ECC; systemd falls back to RSA the same way.
        out.primary_alg = PrimaryAlg::rsa;
        primary = create_primary(s, PrimaryAlg::rsa);
    }
    if (!primary) return std::unexpected(std::move(primary).error().context("seal"));
    Handle enc = BALLAST_TRY_CTX(hmac_session(s, *primary, ESYS_TR_NONE), "seal");
    PolicyTerms terms{bank, pcrs, pin_auth.has_value(), signer, ExponentForm::literal};
    PolicySession policy = BALLAST_TRY_CTX(policy_session(s, *primary, true, terms), "seal");
    out.policy = policy.digest;

    TPM2B_PUBLIC tmpl{};
    TPMT_PUBLIC& p = tmpl.publicArea;
    p.type = TPM2_ALG_KEYEDHASH;
    p.nameAlg = TPM2_ALG_SHA256;
    p.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT;
    if (!pin_auth) p.objectAttributes |= TPMA_OBJECT_NODA;
    p.parameters.keyedHashDetail.scheme.scheme = TPM2_ALG_NULL;
    p.unique.keyedHash.size = 32;
    p.authPolicy.size = uint16_t(policy.digest.size());
    std::memcpy(p.authPolicy.buffer, policy.digest.data(), policy.digest.size());

    TPM2B_SENSITIVE_CREATE sensitive{};
    if (pin_auth) set_auth(sensitive.sensitive.userAuth, *pin_auth);
    sensitive.sensitive.data.size = uint16_t(secret.size());
    std::memcpy(sensitive.sensitive.data.buffer, secret.data(), secret.size());
    TPM2B_DATA outside{};
    TPML_PCR_SELECTION creation_pcr{};
    TPM2B_PRIVATE* priv_raw = nullptr;
    TPM2B_PUBLIC* pub_raw = nullptr;
    Status created =
        s.check(s.api->Esys_Create(s.esys, primary->get(), enc.get(), ESYS_TR_NONE, ESYS_TR_NONE,
                                   &sensitive, &tmpl, &outside, &creation_pcr, &priv_raw, &pub_raw,
                                   nullptr, nullptr, nullptr),
                "seal: create sealed object");
    ::explicit_bzero(&sensitive, sizeof sensitive);
    if (!created) return std::unexpected(created.error());
    EsysPtr<TPM2B_PRIVATE> priv(priv_raw, {s.api});
    EsysPtr<TPM2B_PUBLIC> pub(pub_raw, {s.api});

    std::string blob(sizeof(TPM2B_PRIVATE) + sizeof(TPM2B_PUBLIC), '\0');
    size_t off = 0;
    auto* buf = reinterpret_cast<uint8_t*>(blob.data());
    if (s.api->Tss2_MU_TPM2B_PRIVATE_Marshal(priv.get(), buf, blob.size(), &off) !=
            TSS2_RC_SUCCESS ||
        s.api->Tss2_MU_TPM2B_PUBLIC_Marshal(pub.get(), buf, blob.size(), &off) != TSS2_RC_SUCCESS)
        return fail(Errc::failed, "seal: cannot marshal the sealed object");
    blob.resize(off);
    out.blob = std::move(blob);
    return out;
}

Result<SecretBytes> Tpm2::unseal(const SealedObject& obj,
                                 std::optional<std::string_view> pin_auth) {
    State& s = *s_;
    TPM2B_PRIVATE priv{};
    TPM2B_PUBLIC pub{};
    size_t off = 0;
    const auto* buf = reinterpret_cast<const uint8_t*>(obj.blob.data());
    if (s.api->Tss2_MU_TPM2B_PRIVATE_Unmarshal(buf, obj.blob.size(), &off, &priv) !=
            TSS2_RC_SUCCESS ||
        s.api->Tss2_MU_TPM2B_PUBLIC_Unmarshal(buf, obj.blob.size(), &off, &pub) != TSS2_RC_SUCCESS)
        return fail(Errc::parse, "tpm2-blob: not a marshalled TPM2B_PRIVATE || TPM2B_PUBLIC");

    Handle primary = BALLAST_TRY_CTX(
        obj.srk ? deserialize_srk(s, *obj.srk) : create_primary(s, obj.primary_alg), "unseal");
    ESYS_TR loaded = ESYS_TR_NONE;
    BALLAST_TRY(s.check(s.api->Esys_Load(s.esys, primary.get(), ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                         ESYS_TR_NONE, &priv, &pub, &loaded),
                        "unseal: load the sealed object"));
    Handle object(&s, loaded);
    if (pin_auth) {
        TPM2B_AUTH auth{};
        set_auth(auth, *pin_auth);
        TSS2_RC rc = s.api->Esys_TR_SetAuth(s.esys, loaded, &auth);
        ::explicit_bzero(&auth, sizeof auth);
        // An empty auth sent instead would cost a try against the lockout counter.
        if (rc != TSS2_RC_SUCCESS)
            return fail(Errc::failed, "unseal: set the PIN: {}", s.api->Tss2_RC_Decode(rc));
    }
    Handle enc = BALLAST_TRY_CTX(hmac_session(s, primary, loaded), "unseal");
    PolicyTerms terms{obj.bank, obj.pcrs, pin_auth.has_value(), obj.signer, ExponentForm::literal};
    PolicySession policy = BALLAST_TRY_CTX(policy_session(s, primary, false, terms), "unseal");
    // systemd 254+ names the key with the exponent 65537 spelled 0: try that spelling too.
    if (policy.digest != obj.policy && obj.signer && obj.signer->key->exponent == 65537) {
        terms.form = ExponentForm::default_zero;
        policy.session = Handle();  // flushed first: a TPM may hold only three sessions
        policy = BALLAST_TRY_CTX(policy_session(s, primary, false, terms), "unseal");
    }
    if (policy.digest != obj.policy)
        return fail(Errc::verification,
                    "unseal: the current PCR values ({}:{}) do not match the sealed policy",
                    to_string(obj.bank), format_pcr_list(obj.pcrs));
    TPM2B_SENSITIVE_DATA* raw = nullptr;
    BALLAST_TRY(s.check(
        s.api->Esys_Unseal(s.esys, loaded, policy.session.get(), enc.get(), ESYS_TR_NONE, &raw),
        "unseal"));
    EsysPtr<TPM2B_SENSITIVE_DATA> data(raw, {s.api});
    SecretBytes secret(data->buffer, data->size);
    ::explicit_bzero(data->buffer, data->size);
    return secret;
}

Result<std::vector<std::string>> Tpm2::read_pcrs(PcrBank bank, PcrMask pcrs) {
    State& s = *s_;
    std::vector<std::string> values;
    for (int i : pcr_indices(pcrs)) {
        TPML_PCR_SELECTION sel = pcr_selection(bank, PcrMask(1u) << i);
        TPML_PCR_SELECTION* sel_out = nullptr;
        TPML_DIGEST* digests = nullptr;
        BALLAST_TRY(s.check(s.api->Esys_PCR_Read(s.esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                                 &sel, nullptr, &sel_out, &digests),
                            fmt::format("read PCR {}", i)));
        EsysPtr<TPML_PCR_SELECTION> sel_owner(sel_out, {s.api});
        EsysPtr<TPML_DIGEST> d(digests, {s.api});
        if (d->count != 1)
            return fail(Errc::unsupported, "read PCR {}: the TPM has no {} bank", i,
                        to_string(bank));
        values.emplace_back(reinterpret_cast<const char*>(d->digests[0].buffer),
                            d->digests[0].size);
    }
    return values;
}

Result<Lockout> Tpm2::lockout() {
    State& s = *s_;
    TPMS_CAPABILITY_DATA* raw = nullptr;
    BALLAST_TRY(s.check(
        s.api->Esys_GetCapability(s.esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                  TPM2_CAP_TPM_PROPERTIES, TPM2_PT_PERMANENT, 1, nullptr, &raw),
        "read TPM properties"));
    EsysPtr<TPMS_CAPABILITY_DATA> perm(raw, {s.api});
    Lockout out;
    const auto& pp = perm->data.tpmProperties;
    if (pp.count == 1 && pp.tpmProperty[0].property == TPM2_PT_PERMANENT)
        out.in_lockout = (pp.tpmProperty[0].value & TPMA_PERMANENT_INLOCKOUT) != 0;
    raw = nullptr;
    BALLAST_TRY(s.check(s.api->Esys_GetCapability(s.esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                                  TPM2_CAP_TPM_PROPERTIES, TPM2_PT_LOCKOUT_COUNTER,
                                                  3, nullptr, &raw),
                        "read TPM lockout properties"));
    EsysPtr<TPMS_CAPABILITY_DATA> props(raw, {s.api});
    const auto& lp = props->data.tpmProperties;
    for (uint32_t i = 0; i < lp.count; ++i) {
        const auto& p = lp.tpmProperty[i];
        if (p.property == TPM2_PT_LOCKOUT_COUNTER) out.counter = p.value;
        if (p.property == TPM2_PT_MAX_AUTH_FAIL) out.max_tries = p.value;
        if (p.property == TPM2_PT_LOCKOUT_INTERVAL) out.recovery_seconds = p.value;
    }
    return out;
}

}  // namespace ballast::crypt
