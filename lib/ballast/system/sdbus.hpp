// sd-bus with RAII and Result: connection set-up, and conversion between D-Bus variants and
// JSON values (so a{sv} status maps become `agentctl --json` output with no second schema).
#pragma once

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "ballast/core/result.hpp"

namespace ballast::sdbus {

struct BusUnref {
    void operator()(sd_bus* b) const noexcept { sd_bus_flush_close_unref(b); }
};
struct MessageUnref {
    void operator()(sd_bus_message* m) const noexcept { sd_bus_message_unref(m); }
};
struct SlotUnref {
    void operator()(sd_bus_slot* s) const noexcept { sd_bus_slot_unref(s); }
};
struct EventUnref {
    void operator()(sd_event* e) const noexcept { sd_event_unref(e); }
};
struct EventSourceUnref {
    void operator()(sd_event_source* s) const noexcept { sd_event_source_disable_unref(s); }
};
using Bus = std::unique_ptr<sd_bus, BusUnref>;
using Message = std::unique_ptr<sd_bus_message, MessageUnref>;
using Slot = std::unique_ptr<sd_bus_slot, SlotUnref>;
using Event = std::unique_ptr<sd_event, EventUnref>;
using EventSource = std::unique_ptr<sd_event_source, EventSourceUnref>;

// Owns an sd_bus_error.
class BusError {
  public:
    BusError() = default;
    ~BusError() { sd_bus_error_free(&e_); }
    BusError(const BusError&) = delete;
    BusError& operator=(const BusError&) = delete;
    sd_bus_error* get() { return &e_; }
    [[nodiscard]] bool is_set() const { return sd_bus_error_is_set(&e_); }
    [[nodiscard]] std::string name() const { return e_.name ? e_.name : ""; }
    [[nodiscard]] std::string message() const { return e_.message ? e_.message : ""; }

  private:
    sd_bus_error e_ = SD_BUS_ERROR_NULL;
};

// The bus address to use: the explicit one, else $BALLAST_BUS_ADDRESS, else none (system bus).
[[nodiscard]] std::optional<std::string> effective_address(const std::string& explicit_address);

// Connects as a client to `address`, or to the system bus when empty.
[[nodiscard]] Result<Bus> connect(const std::optional<std::string>& address);

// Errors from sd-bus calls: a remote D-Bus error keeps its name and text.
[[nodiscard]] Error bus_error(int r, const BusError& e, std::string_view what);

// Appends one value as a variant ('v'): string s, bool b, signed x, unsigned t, double d,
// array of strings as, object a{sv}, array of objects aa{sv}, null as empty string.
[[nodiscard]] Status append_variant(sd_bus_message* m, const nlohmann::json& value);
// Appends an object as a{sv}.
[[nodiscard]] Status append_dict(sd_bus_message* m, const nlohmann::json& object);
// Reads one variant (any basic type, arrays, dicts) at the message's read position.
[[nodiscard]] Result<nlohmann::json> read_variant(sd_bus_message* m);
// Reads an a{sv} at the message's read position.
[[nodiscard]] Result<nlohmann::json> read_dict(sd_bus_message* m);

}  // namespace ballast::sdbus
