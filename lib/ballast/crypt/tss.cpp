#include "ballast/crypt/tss.hpp"

namespace ballast::crypt::tss {

Result<const Api*> api() {
    return dynlib::once<Api>([](Api& a) -> Status {
        BALLAST_TRY(dynlib::load_symbols("libtss2-esys.so.0", "libtss2-esys-3.0.2-0",
                                         {BALLAST_TSS_ESYS(BALLAST_DYNLIB_SYMBOL)}));
        BALLAST_TRY(dynlib::load_symbols("libtss2-mu.so.0", "libtss2-mu0",
                                         {BALLAST_TSS_MU(BALLAST_DYNLIB_SYMBOL)}));
        BALLAST_TRY(dynlib::load_symbols("libtss2-tctildr.so.0", "libtss2-tctildr0",
                                         {BALLAST_TSS_TCTILDR(BALLAST_DYNLIB_SYMBOL)}));
        return dynlib::load_symbols("libtss2-rc.so.0", "libtss2-rc0",
                                    {BALLAST_TSS_RC(BALLAST_DYNLIB_SYMBOL)});
    });
}

TSS2_RC base_rc(TSS2_RC rc) noexcept {
    if ((rc & TSS2_RC_LAYER_MASK) != TSS2_TPM_RC_LAYER) return rc;
    // Format-one codes carry a handle, session or parameter number in bits 8-11.
    if (rc & TPM2_RC_FMT1) return rc & (TPM2_RC_FMT1 | 0x3f);
    return rc & 0xfff;
}

}  // namespace ballast::crypt::tss
