#include "ballast/core/dynlib.hpp"

#include <dlfcn.h>

namespace ballast::dynlib {

Status load_symbols(const char* soname, const char* package,
                    std::initializer_list<Symbol> symbols) {
    void* h = ::dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return fail(Errc::unsupported, "cannot load {} (install {}): {}", soname, package,
                    ::dlerror());
    for (const Symbol& s : symbols) {
        *s.slot = ::dlsym(h, s.name);
        if (!*s.slot) return fail(Errc::unsupported, "{} has no {}", soname, s.name);
    }
    return {};
}

}  // namespace ballast::dynlib
