#include "ballast/system/systemd.hpp"

#include <systemd/sd-daemon.h>

namespace ballast::systemd {
namespace {

constexpr const char* kDest = "org.freedesktop.systemd1";
constexpr const char* kPath = "/org/freedesktop/systemd1";
constexpr const char* kManager = "org.freedesktop.systemd1.Manager";

Status check(int r, std::string_view what) {
    if (r < 0) return fail_errno(r, what);
    return {};
}

}  // namespace

bool running() {
    return sd_booted() > 0;
}

Result<Manager> Manager::connect() {
    auto bus = BALLAST_TRY_CTX(sdbus::connect(std::nullopt), "systemd");
    return Manager(std::move(bus));
}

Result<bool> Manager::unit_files(const char* method, const std::vector<std::string>& units,
                                 bool with_force) {
    sd_bus_message* raw = nullptr;
    BALLAST_TRY(check(
        sd_bus_message_new_method_call(bus_.get(), &raw, kDest, kPath, kManager, method), method));
    sdbus::Message m(raw);
    BALLAST_TRY(check(sd_bus_message_open_container(m.get(), 'a', "s"), method));
    for (const auto& u : units)
        BALLAST_TRY(check(sd_bus_message_append_basic(m.get(), 's', u.c_str()), method));
    BALLAST_TRY(check(sd_bus_message_close_container(m.get()), method));
    BALLAST_TRY(check(sd_bus_message_append(m.get(), "b", 0), method));  // runtime: no
    if (with_force) BALLAST_TRY(check(sd_bus_message_append(m.get(), "b", 1), method));
    sdbus::BusError err;
    sd_bus_message* reply_raw = nullptr;
    int r = sd_bus_call(bus_.get(), m.get(), 0, err.get(), &reply_raw);
    if (r < 0) return std::unexpected(sdbus::bus_error(r, err, fmt::format("systemd {}", method)));
    sdbus::Message reply(reply_raw);
    // EnableUnitFiles returns (b carries_install_info, a(sss) changes); the others a(sss).
    if (std::string_view(method) == "EnableUnitFiles") {
        int carries = 0;
        BALLAST_TRY(check(sd_bus_message_read(reply.get(), "b", &carries), method));
    }
    BALLAST_TRY(check(sd_bus_message_enter_container(reply.get(), 'a', "(sss)"), method));
    bool changed = false;
    const char *type, *from, *to;
    while ((r = sd_bus_message_read(reply.get(), "(sss)", &type, &from, &to)) > 0)
        changed = true;
    BALLAST_TRY(check(r, method));
    BALLAST_TRY(check(sd_bus_message_exit_container(reply.get()), method));
    if (changed) BALLAST_TRY(reload());
    return changed;
}

Result<bool> Manager::enable(const std::vector<std::string>& units) {
    return unit_files("EnableUnitFiles", units, true);
}
Result<bool> Manager::disable(const std::vector<std::string>& units) {
    return unit_files("DisableUnitFiles", units, false);
}
Result<bool> Manager::mask(const std::vector<std::string>& units) {
    return unit_files("MaskUnitFiles", units, true);
}

Result<std::string> Manager::active_state(const std::string& unit) {
    sdbus::BusError err;
    sd_bus_message* reply_raw = nullptr;
    int r = sd_bus_call_method(bus_.get(), kDest, kPath, kManager, "GetUnit", err.get(), &reply_raw,
                               "s", unit.c_str());
    if (r < 0) {
        if (err.name() == "org.freedesktop.systemd1.NoSuchUnit") return std::string("inactive");
        return std::unexpected(sdbus::bus_error(r, err, "systemd GetUnit " + unit));
    }
    sdbus::Message reply(reply_raw);
    const char* path = nullptr;
    BALLAST_TRY(check(sd_bus_message_read(reply.get(), "o", &path), "GetUnit"));
    char* state = nullptr;
    sdbus::BusError err2;
    r = sd_bus_get_property_string(bus_.get(), kDest, path, "org.freedesktop.systemd1.Unit",
                                   "ActiveState", err2.get(), &state);
    if (r < 0) return std::unexpected(sdbus::bus_error(r, err2, "systemd ActiveState " + unit));
    std::string s(state);
    free(state);
    return s;
}

Result<bool> Manager::start(const std::string& unit) {
    auto state = BALLAST_TRY(active_state(unit));
    if (state == "active" || state == "activating" || state == "reloading") return false;
    sdbus::BusError err;
    int r = sd_bus_call_method(bus_.get(), kDest, kPath, kManager, "StartUnit", err.get(), nullptr,
                               "ss", unit.c_str(), "replace");
    if (r < 0) return std::unexpected(sdbus::bus_error(r, err, "systemd StartUnit " + unit));
    return true;
}

Status Manager::unit_job(const char* method, const std::string& unit) {
    sdbus::BusError err;
    int r = sd_bus_call_method(bus_.get(), kDest, kPath, kManager, method, err.get(), nullptr, "ss",
                               unit.c_str(), "replace");
    if (r < 0)
        return std::unexpected(
            sdbus::bus_error(r, err, fmt::format("systemd {} {}", method, unit)));
    return {};
}

Status Manager::restart(const std::string& unit) {
    return unit_job("RestartUnit", unit);
}

Status Manager::stop(const std::string& unit) {
    return unit_job("StopUnit", unit);
}

Status Manager::reload() {
    sdbus::BusError err;
    int r =
        sd_bus_call_method(bus_.get(), kDest, kPath, kManager, "Reload", err.get(), nullptr, "");
    if (r < 0) return std::unexpected(sdbus::bus_error(r, err, "systemd Reload"));
    return {};
}

Status Manager::reboot() {
    return start_irreversibly("reboot.target");
}

Status Manager::poweroff() {
    return start_irreversibly("poweroff.target");
}

// As `systemctl reboot` does: a job no later job can cancel.
Status Manager::start_irreversibly(const std::string& target) {
    sdbus::BusError err;
    int r = sd_bus_call_method(bus_.get(), kDest, kPath, kManager, "StartUnit", err.get(), nullptr,
                               "ss", target.c_str(), "replace-irreversibly");
    if (r < 0) return std::unexpected(sdbus::bus_error(r, err, "systemd start " + target));
    return {};
}

}  // namespace ballast::systemd
