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

Result<sdbus::Message> AgentClient::call(const char* method,
                                         const std::vector<std::string>& strings,
                                         const nlohmann::json& options, uint64_t timeout_usec) {
    sd_bus_message* raw = nullptr;
    int r =
        sd_bus_message_new_method_call(bus_.get(), &raw, kBusName, kObjectPath, kInterface, method);
    if (r < 0) return fail_errno(r, method);
    sdbus::Message m(raw);
    for (const auto& s : strings)
        if ((r = sd_bus_message_append(m.get(), "s", s.c_str())) < 0) return fail_errno(r, method);
    if (options.is_object()) BALLAST_TRY(sdbus::append_dict(m.get(), options));
    sdbus::BusError err;
    sd_bus_message* reply_raw = nullptr;
    r = sd_bus_call(bus_.get(), m.get(), timeout_usec, err.get(), &reply_raw);
    if (r < 0) return std::unexpected(sdbus::bus_error(r, err, method));
    return sdbus::Message(reply_raw);
}

Result<std::string> AgentClient::call_string(const char* method,
                                             const std::vector<std::string>& strings,
                                             const nlohmann::json& options, uint64_t timeout_usec) {
    auto reply = BALLAST_TRY(call(method, strings, options, timeout_usec));
    const char* text = nullptr;
    if (int r = sd_bus_message_read(reply.get(), "s", &text); r < 0)
        return fail_errno(r, fmt::format("{} reply", method));
    return std::string(text);
}

Result<nlohmann::json> AgentClient::reset(const nlohmann::json& options) {
    // A node leaving its k3s cluster first waits for its pods to be evicted.
    constexpr uint64_t kThirtyMinutes = 30ull * 60 * 1000 * 1000;
    auto reply = BALLAST_TRY(call("Reset", {}, options, kThirtyMinutes));
    const char* what = nullptr;
    int reboot = 0;
    if (int r = sd_bus_message_read(reply.get(), "sb", &what, &reboot); r < 0)
        return fail_errno(r, "Reset reply");
    return nlohmann::json{{"reset", what}, {"reboot", reboot != 0}};
}

Result<nlohmann::json> AgentClient::run_stage(const std::string& stage, bool dry_run,
                                              const std::vector<std::string>& config_files) {
    nlohmann::json opts = {{"DryRun", dry_run}};
    if (!config_files.empty()) opts["ConfigFiles"] = config_files;
    constexpr uint64_t kSixHours = 6ull * 3600 * 1000 * 1000;
    auto text = BALLAST_TRY(call_string("RunStage", {stage}, opts, kSixHours));
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded())
        return fail(Errc::parse, "RunStage: the agent sent a report that is not JSON");
    return j;
}

namespace {

struct UpgradeWait {
    const AgentClient::OnProgress* on_progress = nullptr;
    std::optional<nlohmann::json> finished;
    bool agent_gone = false;
};

int on_progress_signal(sd_bus_message* m, void* userdata, sd_bus_error*) {
    auto* w = static_cast<UpgradeWait*>(userdata);
    const char* phase = nullptr;
    double pct = 0, rate = 0, eta = 0;
    uint64_t bytes = 0, total = 0;
    if (sd_bus_message_read(m, "sdttdd", &phase, &pct, &bytes, &total, &rate, &eta) < 0) return 0;
    if (*w->on_progress)
        (*w->on_progress)({{"phase", phase},
                           {"percent", pct},
                           {"bytes", bytes},
                           {"total", total},
                           {"rate", rate},
                           {"eta", eta}});
    return 0;
}

int on_job_finished(sd_bus_message* m, void* userdata, sd_bus_error*) {
    auto* w = static_cast<UpgradeWait*>(userdata);
    const char* op = nullptr;
    const char* msg = nullptr;
    int ok = 0;
    if (sd_bus_message_read(m, "sbs", &op, &ok, &msg) < 0) return 0;
    if (std::string_view(op) == "upgrade")
        w->finished = nlohmann::json{{"ok", ok != 0}, {"message", msg}};
    return 0;
}

int on_owner_changed(sd_bus_message* m, void* userdata, sd_bus_error*) {
    auto* w = static_cast<UpgradeWait*>(userdata);
    const char *name = nullptr, *old_owner = nullptr, *new_owner = nullptr;
    if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0) return 0;
    if (std::string_view(name) == kBusName && (!new_owner || !*new_owner)) w->agent_gone = true;
    return 0;
}

}  // namespace

Result<nlohmann::json> AgentClient::upgrade(const std::string& source,
                                            const nlohmann::json& options,
                                            const OnProgress& on_progress) {
    UpgradeWait w;
    w.on_progress = &on_progress;
    // Subscribed before the call, so no signal of this job can be missed.
    sd_bus_slot* raw = nullptr;
    int r = sd_bus_match_signal(bus_.get(), &raw, kBusName, kObjectPath, kInterface, "Progress",
                                on_progress_signal, &w);
    if (r < 0) return fail_errno(r, "subscribe to Progress");
    sdbus::Slot s1(raw);
    r = sd_bus_match_signal(bus_.get(), &raw, kBusName, kObjectPath, kInterface, "JobFinished",
                            on_job_finished, &w);
    if (r < 0) return fail_errno(r, "subscribe to JobFinished");
    sdbus::Slot s2(raw);
    r = sd_bus_match_signal(bus_.get(), &raw, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                            "org.freedesktop.DBus", "NameOwnerChanged", on_owner_changed, &w);
    if (r < 0) return fail_errno(r, "subscribe to NameOwnerChanged");
    sdbus::Slot s3(raw);
    BALLAST_TRY(call_string("Upgrade", {source}, options));
    while (!w.finished) {
        if (w.agent_gone)
            return fail(Errc::unavailable,
                        "ballast-agent went away during the upgrade; it resumes the write when it "
                        "starts again (see agentctl status)");
        r = sd_bus_process(bus_.get(), nullptr);
        if (r < 0) return fail_errno(r, "D-Bus");
        if (r > 0) continue;
        r = sd_bus_wait(bus_.get(), UINT64_MAX);
        if (r < 0 && r != -EINTR) return fail_errno(r, "D-Bus");
    }
    return *w.finished;
}

}  // namespace ballast::api
