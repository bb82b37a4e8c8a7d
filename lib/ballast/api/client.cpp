#include "ballast/api/client.hpp"

#include "ballast/api/names.hpp"

namespace ballast::api {

Result<AgentClient> AgentClient::connect(const std::optional<std::string>& address) {
    auto bus = sdbus::connect(address);
    if (!bus) {
        return fail(Errc::unavailable, "cannot reach the bus {}: {}",
                    address ? *address : std::string("(system bus)"), bus.error().message());
    }
    int r =
        sd_bus_call_method(bus->get(), "org.freedesktop.DBus", "/org/freedesktop/DBus",
                           "org.freedesktop.DBus", "GetNameOwner", nullptr, nullptr, "s", kBusName);
    if (r < 0)
        return fail(Errc::unavailable, "ballast-agent is not running ({} has no owner on {})",
                    kBusName, address ? *address : std::string("the system bus"));
    return AgentClient(std::move(*bus));
}

Result<nlohmann::json> AgentClient::get_status() {
    sdbus::BusError err;
    sd_bus_message* reply = nullptr;
    int r = sd_bus_call_method(bus_.get(), kBusName, kObjectPath, kInterface, "GetStatus",
                               err.get(), &reply, "");
    if (r < 0) return std::unexpected(sdbus::bus_error(r, err, "GetStatus"));
    sdbus::Message msg(reply);
    return with_context(sdbus::read_dict(msg.get()), "GetStatus reply");
}

Status AgentClient::set_string_property(const char* name, const std::string& value) {
    sdbus::BusError err;
    int r = sd_bus_set_property(bus_.get(), kBusName, kObjectPath, kInterface, name, err.get(), "s",
                                value.c_str());
    if (r < 0) return std::unexpected(sdbus::bus_error(r, err, fmt::format("set {}", name)));
    return {};
}

Status AgentClient::call_void(const char* method) {
    sdbus::BusError err;
    int r = sd_bus_call_method(bus_.get(), kBusName, kObjectPath, kInterface, method, err.get(),
                               nullptr, "");
    if (r < 0) return std::unexpected(sdbus::bus_error(r, err, method));
    return {};
}

}  // namespace ballast::api
