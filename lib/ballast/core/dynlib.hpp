// Shared libraries loaded with dlopen() on first use, so the long-running daemon maps heavy
// libraries (libcrypto and what pulls it in: libcryptsetup, tpm2-tss) only in the jobs that need
// them (docs/performance.md). A table of entry points is declared with an X-macro list:
//   #define MY_FUNCTIONS(X) X(foo) X(bar)
//   struct Api { MY_FUNCTIONS(BALLAST_DYNLIB_DECLARE) };
//   load_symbols("libfoo.so.1", "libfoo1", {MY_FUNCTIONS(BALLAST_DYNLIB_SYMBOL)})
// and handed out by once<Api>() from the library's api().
#pragma once

#include <initializer_list>
#include <mutex>

#include "ballast/core/result.hpp"

namespace ballast::dynlib {

struct Symbol {
    void** slot;
    const char* name;
};

// dlopen()s `soname` (kept loaded for the life of the process) and fills every slot. The error
// names the Debian package that provides the library, or the missing symbol.
[[nodiscard]] Status load_symbols(const char* soname, const char* package,
                                  std::initializer_list<Symbol> symbols);

// The table filled by `load(Api& a) -> Status` on the first call (dlopen()s, symbols, any set-up
// after them); every call returns that first call's outcome. One call site per table: the
// statics belong to the instantiation, and each lambda is a type of its own.
template <class Api, class Load>
[[nodiscard]] Result<const Api*> once(Load load) {
    static Api a;
    static Status loaded = fail(Errc::failed, "not loaded");
    static std::once_flag flag;
    std::call_once(flag, [&] { loaded = load(a); });
    if (!loaded) return std::unexpected(loaded.error());
    return &a;
}

}  // namespace ballast::dynlib

#define BALLAST_DYNLIB_DECLARE(name) decltype(&::name) name = nullptr;
#define BALLAST_DYNLIB_SYMBOL(name) \
    ::ballast::dynlib::Symbol{reinterpret_cast<void**>(&a.name), #name},
