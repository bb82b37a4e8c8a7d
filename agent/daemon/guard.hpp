// The daemon's callbacks are called from C (sd-bus, sd-event): an exception must not cross
// them. A bug that throws, perhaps reached by a caller's input, then fails that one call
// instead of terminating the daemon for every caller and every later job.
#pragma once

#include <systemd/sd-bus.h>

#include <exception>
#include <tuple>

#include <spdlog/spdlog.h>

#include "ballast/core/json.hpp"

namespace ballast::agent {

// Runs `f` (returning void); an exception is logged with `what`.
template <class F>
void run_guarded(const char* what, F&& f) noexcept {
    try {
        f();
    } catch (const std::exception& e) {
        spdlog::error("{}: internal error: {}", what, e.what());
    }
}

// Guarded<handler>::call is `handler` (a D-Bus method or property callback, whose last
// argument is the sd_bus_error*) with an exception turned into an error reply.
template <auto F>
struct Guarded;

template <class... A, int (*F)(A...)>
struct Guarded<F> {
    static int call(A... args) noexcept {
        sd_bus_error* ret_error = std::get<sizeof...(A) - 1>(std::tie(args...));
        try {
            return F(args...);
        } catch (const std::exception& e) {
            spdlog::error("D-Bus handler: internal error: {}", e.what());
            return sd_bus_error_setf(ret_error, SD_BUS_ERROR_FAILED, "internal error: %s",
                                     valid_utf8(e.what()).c_str());
        }
    }
};

}  // namespace ballast::agent
