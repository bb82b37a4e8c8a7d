// The running systemd, through its D-Bus API (org.freedesktop.systemd1): unit files, jobs,
// reboot. Used only when the node root is the running system and systemd is PID 1.
#pragma once

#include <string>
#include <vector>

#include "ballast/core/result.hpp"
#include "ballast/system/sdbus.hpp"

namespace ballast::systemd {

// True when systemd is the running init (sd_booted()).
[[nodiscard]] bool running();

class Manager {
  public:
    // Connects to the system bus.
    [[nodiscard]] static Result<Manager> connect();

    // Each returns whether systemd reported any change.
    [[nodiscard]] Result<bool> enable(const std::vector<std::string>& units);
    [[nodiscard]] Result<bool> disable(const std::vector<std::string>& units);
    [[nodiscard]] Result<bool> mask(const std::vector<std::string>& units);
    // Starts a unit unless it is active; returns whether a start was queued.
    [[nodiscard]] Result<bool> start(const std::string& unit);
    [[nodiscard]] Status restart(const std::string& unit);
    [[nodiscard]] Status stop(const std::string& unit);
    [[nodiscard]] Status reload();
    // "active", "inactive", "failed", ... ("inactive" for units systemd has not loaded).
    [[nodiscard]] Result<std::string> active_state(const std::string& unit);
    [[nodiscard]] Status reboot();
    [[nodiscard]] Status poweroff();

  private:
    explicit Manager(sdbus::Bus bus) : bus_(std::move(bus)) {}
    [[nodiscard]] Status start_irreversibly(const std::string& target);
    [[nodiscard]] Status unit_job(const char* method, const std::string& unit);
    [[nodiscard]] Result<bool> unit_files(const char* method, const std::vector<std::string>& units,
                                          bool with_force);
    sdbus::Bus bus_;
};

}  // namespace ballast::systemd
