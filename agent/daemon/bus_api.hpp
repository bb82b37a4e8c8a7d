// The org.ballast.Agent1 object: vtable and method handlers over a Daemon.
#pragma once

#include <systemd/sd-bus.h>

#include "ballast/core/result.hpp"

namespace ballast::agent {

// userdata of every entry is the Daemon*.
[[nodiscard]] const sd_bus_vtable* agent_vtable();

// Fails the call with AccessDenied unless the sender's effective uid is 0. Returns < 0 (an
// sd-bus error code to return from the handler) when denied, 0 when allowed.
// `action` names what is refused in the message (default: the called member).
[[nodiscard]] int require_root(sd_bus_message* m, sd_bus_error* ret_error,
                               const char* action = nullptr);

// Maps a failed Result to a D-Bus error (the agent's error names) in `ret_error`; returns what a
// handler returns for it.
int reply_error(sd_bus_error* ret_error, const Error& e);

}  // namespace ballast::agent
