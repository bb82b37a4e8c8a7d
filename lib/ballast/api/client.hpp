// Client side of org.ballast.Agent1, used by agentctl (and tests).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ballast/core/result.hpp"
#include "ballast/system/sdbus.hpp"

namespace ballast::api {

class AgentClient {
  public:
    // Connects to the bus (address or system bus) and checks that the agent is there;
    // Errc::unavailable when the bus or the agent cannot be reached.
    [[nodiscard]] static Result<AgentClient> connect(const std::optional<std::string>& address);

    // GetStatus() as a JSON object (the a{sv} keys as they are).
    [[nodiscard]] Result<nlohmann::json> get_status();
    // Property setter and plain method calls with no arguments.
    [[nodiscard]] Status set_string_property(const char* name, const std::string& value);
    [[nodiscard]] Status call_void(const char* method);
    // RunStage: waits for the stage to finish (up to 6 hours) and returns its report.
    [[nodiscard]] Result<nlohmann::json> run_stage(const std::string& stage, bool dry_run,
                                                   const std::vector<std::string>& config_files);

    // Calls `method` with `strings` then, when `options` is an object, an a{sv}; returns the
    // reply's one string. `timeout_usec` 0: sd-bus's default (25 s).
    [[nodiscard]] Result<std::string> call_string(const char* method,
                                                  const std::vector<std::string>& strings,
                                                  const nlohmann::json& options = nullptr,
                                                  uint64_t timeout_usec = 0);

    // Reset(options): {"reset": what is wiped at the next boot, "reboot": whether the agent
    // reboots for it now}.
    [[nodiscard]] Result<nlohmann::json> reset(const nlohmann::json& options);

    // Upgrade(source, options), then waits for its JobFinished, handing each Progress signal
    // ({phase, percent, bytes, total, rate, eta}) to `on_progress`. Returns {ok, message}.
    using OnProgress = std::function<void(const nlohmann::json&)>;
    [[nodiscard]] Result<nlohmann::json> upgrade(const std::string& source,
                                                 const nlohmann::json& options,
                                                 const OnProgress& on_progress);

    [[nodiscard]] sd_bus* bus() const { return bus_.get(); }

  private:
    explicit AgentClient(sdbus::Bus bus) : bus_(std::move(bus)) {}
    [[nodiscard]] Result<sdbus::Message> call(const char* method,
                                              const std::vector<std::string>& strings,
                                              const nlohmann::json& options, uint64_t timeout_usec);
    sdbus::Bus bus_;
};

}  // namespace ballast::api
