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

namespace ballast::api {

Result<nlohmann::json> AgentClient::run_stage(const std::string& stage, bool dry_run,
                                              const std::vector<std::string>& config_files) {
    sd_bus_message* raw = nullptr;
    int r = sd_bus_message_new_method_call(bus_.get(), &raw, kBusName, kObjectPath, kInterface,
                                           "RunStage");
    if (r < 0) return fail_errno(r, "RunStage");
    sdbus::Message m(raw);
    if ((r = sd_bus_message_append(m.get(), "s", stage.c_str())) < 0)
        return fail_errno(r, "RunStage");
    nlohmann::json opts = {{"DryRun", dry_run}};
    if (!config_files.empty()) opts["ConfigFiles"] = config_files;
    BALLAST_TRY(sdbus::append_dict(m.get(), opts));
    sdbus::BusError err;
    sd_bus_message* reply_raw = nullptr;
    constexpr uint64_t kSixHours = 6ull * 3600 * 1000 * 1000;
    r = sd_bus_call(bus_.get(), m.get(), kSixHours, err.get(), &reply_raw);
    if (r < 0) return std::unexpected(sdbus::bus_error(r, err, "RunStage"));
    sdbus::Message reply(reply_raw);
    const char* text = nullptr;
    if ((r = sd_bus_message_read(reply.get(), "s", &text)) < 0)
        return fail_errno(r, "RunStage reply");
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded())
        return fail(Errc::parse, "RunStage: the agent sent a report that is not JSON");
    return j;
}

}  // namespace ballast::api
