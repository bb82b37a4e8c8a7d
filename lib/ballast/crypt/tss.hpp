// tpm2-tss (ESAPI, marshalling, TCTI loader, response codes), loaded with dlopen() on first use:
// libtss2-esys pulls in libcrypto, which the daemon maps only in the jobs that use the TPM.
#pragma once

#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include "ballast/core/dynlib.hpp"
#include "ballast/core/result.hpp"

namespace ballast::crypt::tss {

#define BALLAST_TSS_ESYS(X)      \
    X(Esys_Initialize)           \
    X(Esys_Finalize)             \
    X(Esys_Free)                 \
    X(Esys_Startup)              \
    X(Esys_CreatePrimary)        \
    X(Esys_Create)               \
    X(Esys_Load)                 \
    X(Esys_Unseal)               \
    X(Esys_FlushContext)         \
    X(Esys_StartAuthSession)     \
    X(Esys_TRSess_SetAttributes) \
    X(Esys_TR_SetAuth)           \
    X(Esys_TR_Deserialize)       \
    X(Esys_TR_Close)             \
    X(Esys_PolicyPCR)            \
    X(Esys_PolicyAuthorize)      \
    X(Esys_LoadExternal)         \
    X(Esys_VerifySignature)      \
    X(Esys_PolicyAuthValue)      \
    X(Esys_PolicyGetDigest)      \
    X(Esys_PCR_Read)             \
    X(Esys_GetCapability)
#define BALLAST_TSS_MU(X)              \
    X(Tss2_MU_TPM2B_PRIVATE_Marshal)   \
    X(Tss2_MU_TPM2B_PRIVATE_Unmarshal) \
    X(Tss2_MU_TPM2B_PUBLIC_Marshal)    \
    X(Tss2_MU_TPM2B_PUBLIC_Unmarshal)  \
    X(Tss2_MU_TPMT_PUBLIC_Unmarshal)
#define BALLAST_TSS_TCTILDR(X) \
    X(Tss2_TctiLdr_Initialize) \
    X(Tss2_TctiLdr_Finalize)
#define BALLAST_TSS_RC(X) X(Tss2_RC_Decode)

struct Api {
    BALLAST_TSS_ESYS(BALLAST_DYNLIB_DECLARE)
    BALLAST_TSS_MU(BALLAST_DYNLIB_DECLARE)
    BALLAST_TSS_TCTILDR(BALLAST_DYNLIB_DECLARE)
    BALLAST_TSS_RC(BALLAST_DYNLIB_DECLARE)
};

// The table, loaded once; Errc::unsupported naming the package when a library is missing.
[[nodiscard]] Result<const Api*> api();

// The TPM's own response code with the session/handle/parameter number masked off, so it can be
// compared with TPM2_RC_* constants; other layers' codes are returned unchanged.
[[nodiscard]] TSS2_RC base_rc(TSS2_RC rc) noexcept;

}  // namespace ballast::crypt::tss
