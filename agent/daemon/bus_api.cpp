#include "bus_api.hpp"

#include <map>

#include <spdlog/spdlog.h>

#include "ballast/api/names.hpp"
#include "ballast/core/json.hpp"
#include "ballast_config.h"
#include "daemon.hpp"
#include "guard.hpp"

namespace ballast::agent {
namespace {

Daemon& daemon_of(void* userdata) {
    return *static_cast<Daemon*>(userdata);
}

int get_string(sd_bus*, const char*, const char*, const char* property, sd_bus_message* reply,
               void* userdata, sd_bus_error*) {
    auto& d = daemon_of(userdata);
    std::string_view p(property);
    std::string value;
    if (p == "Version")
        value = BALLAST_VERSION;
    else if (p == "BootedSlot")
        value = d.booted_slot();
    else if (p == "Operation")
        value = d.operation();
    else if (p == "LastError")
        value = d.last_error();
    else if (p == "Disk")
        value = d.disk();
    else if (p == "LogLevel")
        value = d.log_level();
    return sd_bus_message_append_basic(reply, 's', valid_utf8(value).c_str());
}

int set_log_level(sd_bus* bus, const char*, const char*, const char*, sd_bus_message* value,
                  void* userdata, sd_bus_error* ret_error) {
    if (int r = require_root(sd_bus_get_current_message(bus), ret_error, "setting LogLevel"); r < 0)
        return r;
    const char* level = nullptr;
    if (int r = sd_bus_message_read_basic(value, 's', &level); r < 0) return r;
    if (auto r = daemon_of(userdata).set_log_level(level); !r)
        return reply_error(ret_error, r.error());
    return 0;
}

int method_get_status(sd_bus_message* m, void* userdata, sd_bus_error* ret_error) {
    sd_bus_message* raw = nullptr;
    int r = sd_bus_message_new_method_return(m, &raw);
    if (r < 0) return r;
    sdbus::Message reply(raw);
    if (auto a = sdbus::append_dict(reply.get(), daemon_of(userdata).status()); !a)
        return reply_error(ret_error, a.error());
    return sd_bus_send(nullptr, reply.get(), nullptr);
}

int method_reload(sd_bus_message* m, void* userdata, sd_bus_error* ret_error) {
    if (int r = require_root(m, ret_error); r < 0) return r;
    if (auto r = daemon_of(userdata).reload(); !r) return reply_error(ret_error, r.error());
    return sd_bus_reply_method_return(m, "");
}

// RunStage(s stage, a{sv} options) -> s report_json. Options: DryRun (b), ConfigFiles (as).
// The reply comes when the stage has run; a second mutating call meanwhile gets Busy.
int method_run_stage(sd_bus_message* m, void* userdata, sd_bus_error* ret_error) {
    if (int r = require_root(m, ret_error); r < 0) return r;
    const char* stage = nullptr;
    if (int r = sd_bus_message_read(m, "s", &stage); r < 0) return r;
    auto opts = sdbus::read_dict(m);
    if (!opts)
        return sd_bus_error_set(ret_error, SD_BUS_ERROR_INVALID_ARGS,
                                valid_utf8(opts.error().what()).c_str());
    bool dry_run = false;
    std::vector<std::string> files;
    for (const auto& [k, v] : opts->items()) {
        if (k == "DryRun" && v.is_boolean())
            dry_run = v.get<bool>();
        else if (k == "ConfigFiles" && v.is_array()) {
            for (const auto& f : v) {
                if (!f.is_string() || f.get<std::string>().empty() ||
                    f.get<std::string>().front() != '/')
                    return sd_bus_error_set(ret_error, SD_BUS_ERROR_INVALID_ARGS,
                                            "ConfigFiles: absolute paths expected");
                files.push_back(f.get<std::string>());
            }
        } else {
            return sd_bus_error_setf(ret_error, SD_BUS_ERROR_INVALID_ARGS,
                                     "unknown or mistyped option '%s'", k.c_str());
        }
    }
    if (auto st = daemon_of(userdata).run_stage(stage, dry_run, std::move(files), m); !st)
        return reply_error(ret_error, st.error());
    return 1;  // replied when the job ends
}

// Reads an a{sv} of booleans whose names are in `known`; anything else is an error.
Result<std::map<std::string, bool>> read_flags(sd_bus_message* m,
                                               std::initializer_list<const char*> known) {
    auto opts = BALLAST_TRY(sdbus::read_dict(m));
    std::map<std::string, bool> out;
    for (const auto& [k, v] : opts.items()) {
        bool ok = v.is_boolean();
        if (ok) {
            ok = false;
            for (const char* n : known)
                ok = ok || k == n;
        }
        if (!ok) return fail(Errc::invalid_argument, "unknown or mistyped option '{}'", k);
        out[k] = v.get<bool>();
    }
    return out;
}

int invalid_args(sd_bus_error* ret_error, const Error& e) {
    return sd_bus_error_set(ret_error, SD_BUS_ERROR_INVALID_ARGS, valid_utf8(e.what()).c_str());
}

int get_progress(sd_bus*, const char*, const char*, const char*, sd_bus_message* reply,
                 void* userdata, sd_bus_error* ret_error) {
    if (auto a = sdbus::append_dict(reply, daemon_of(userdata).progress()); !a)
        return reply_error(ret_error, a.error());
    return 0;
}

// Upgrade(s source, a{sv} options) -> s. Options: Force (b), NoReboot (b), DryRun (b: check and
// plan the download, write nothing). Returns when the job has started; Progress signals follow
// and JobFinished("upgrade", ...) ends it.
int method_upgrade(sd_bus_message* m, void* userdata, sd_bus_error* ret_error) {
    if (int r = require_root(m, ret_error); r < 0) return r;
    const char* source = nullptr;
    if (int r = sd_bus_message_read(m, "s", &source); r < 0) return r;
    auto flags = read_flags(m, {"Force", "NoReboot", "DryRun"});
    if (!flags) return invalid_args(ret_error, flags.error());
    ops::UpgradeRequest req;
    req.source = source;
    req.force = (*flags)["Force"];
    req.reboot = !(*flags)["NoReboot"];
    req.dry_run = (*flags)["DryRun"];
    if (auto st = daemon_of(userdata).start_upgrade(req); !st)
        return reply_error(ret_error, st.error());
    return sd_bus_reply_method_return(m, "s", "upgrade");
}

// CheckHealth(a{sv} options) -> s report_json. Options: NoReboot (b). Replies when assessed.
int method_check_health(sd_bus_message* m, void* userdata, sd_bus_error* ret_error) {
    if (int r = require_root(m, ret_error); r < 0) return r;
    auto flags = read_flags(m, {"NoReboot"});
    if (!flags) return invalid_args(ret_error, flags.error());
    if (auto st = daemon_of(userdata).check_health(!(*flags)["NoReboot"], m); !st)
        return reply_error(ret_error, st.error());
    return 1;  // replied when the job ends
}

int mark(sd_bus_message* m, void* userdata, sd_bus_error* ret_error, bool good) {
    if (int r = require_root(m, ret_error); r < 0) return r;
    const char* slot = nullptr;
    if (int r = sd_bus_message_read(m, "s", &slot); r < 0) return r;
    auto done = daemon_of(userdata).mark_slot(good, slot);
    if (!done) return reply_error(ret_error, done.error());
    return sd_bus_reply_method_return(m, "s", done->c_str());
}

// MarkGood(s slot) / MarkBad(s slot) -> s slot; "" means the booted slot.
int method_mark_good(sd_bus_message* m, void* userdata, sd_bus_error* ret_error) {
    return mark(m, userdata, ret_error, true);
}
int method_mark_bad(sd_bus_message* m, void* userdata, sd_bus_error* ret_error) {
    return mark(m, userdata, ret_error, false);
}

// Rollback(a{sv} options) -> s slot. Options: NoReboot (b).
int method_rollback(sd_bus_message* m, void* userdata, sd_bus_error* ret_error) {
    if (int r = require_root(m, ret_error); r < 0) return r;
    auto flags = read_flags(m, {"NoReboot"});
    if (!flags) return invalid_args(ret_error, flags.error());
    auto to = daemon_of(userdata).rollback(!(*flags)["NoReboot"]);
    if (!to) return reply_error(ret_error, to.error());
    return sd_bus_reply_method_return(m, "s", to->c_str());
}

// Recovery(a{sv} options) -> s slot. Options: NoReboot (b). The next boot takes the recovery
// entry, once.
int method_recovery(sd_bus_message* m, void* userdata, sd_bus_error* ret_error) {
    if (int r = require_root(m, ret_error); r < 0) return r;
    auto flags = read_flags(m, {"NoReboot"});
    if (!flags) return invalid_args(ret_error, flags.error());
    auto slot = daemon_of(userdata).recovery(!(*flags)["NoReboot"]);
    if (!slot) return reply_error(ret_error, slot.error());
    return sd_bus_reply_method_return(m, "s", slot->c_str());
}

// Reset(a{sv} options) -> s what, b reboot. Options (b): ResetOem, ResetPersistent, PowerOff,
// NoReboot, Encrypt (those not given come from the node's reset: block), Graceful (leave the k3s
// cluster first; default: when k3s is set up), Force (reset even when leaving fails). Replied
// once the request is stored (after the leave job); the reset itself happens at the next boot,
// before persistent is mounted.
int method_reset(sd_bus_message* m, void* userdata, sd_bus_error* ret_error) {
    if (int r = require_root(m, ret_error); r < 0) return r;
    auto flags = read_flags(
        m, {"ResetOem", "ResetPersistent", "PowerOff", "NoReboot", "Encrypt", "Graceful", "Force"});
    if (!flags) return invalid_args(ret_error, flags.error());
    auto given = [&](const char* k) {
        auto it = flags->find(k);
        return it == flags->end() ? std::nullopt : std::optional<bool>(it->second);
    };
    ops::ResetAsk ask;
    ask.oem = given("ResetOem");
    ask.persistent = given("ResetPersistent");
    ask.poweroff = given("PowerOff");
    if (auto no = given("NoReboot")) ask.reboot = !*no;
    ask.encrypt = given("Encrypt").value_or(false);
    if (auto st = daemon_of(userdata).reset(std::move(ask), given("Graceful"),
                                            given("Force").value_or(false), m);
        !st)
        return reply_error(ret_error, st.error());
    return 1;  // replied by reset(), now or when the leave job ends
}

const sd_bus_vtable kVtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_PROPERTY("Version", "s", Guarded<get_string>::call, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("BootedSlot", "s", Guarded<get_string>::call, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("Disk", "s", Guarded<get_string>::call, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("Operation", "s", Guarded<get_string>::call, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("LastError", "s", Guarded<get_string>::call, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_WRITABLE_PROPERTY("LogLevel", "s", Guarded<get_string>::call,
                             Guarded<set_log_level>::call, 0,
                             SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE | SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("GetStatus", SD_BUS_NO_ARGS, SD_BUS_RESULT("a{sv}", status),
                            Guarded<method_get_status>::call, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("Reload", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT,
                            Guarded<method_reload>::call, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("RunStage", SD_BUS_ARGS("s", stage, "a{sv}", options),
                            SD_BUS_RESULT("s", report), Guarded<method_run_stage>::call,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_PROPERTY("Progress", "a{sv}", Guarded<get_progress>::call, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_METHOD_WITH_ARGS("Upgrade", SD_BUS_ARGS("s", source, "a{sv}", options),
                            SD_BUS_RESULT("s", operation), Guarded<method_upgrade>::call,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("CheckHealth", SD_BUS_ARGS("a{sv}", options),
                            SD_BUS_RESULT("s", report), Guarded<method_check_health>::call,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("MarkGood", SD_BUS_ARGS("s", slot), SD_BUS_RESULT("s", slot),
                            Guarded<method_mark_good>::call, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("MarkBad", SD_BUS_ARGS("s", slot), SD_BUS_RESULT("s", slot),
                            Guarded<method_mark_bad>::call, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("Rollback", SD_BUS_ARGS("a{sv}", options), SD_BUS_RESULT("s", slot),
                            Guarded<method_rollback>::call, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("Recovery", SD_BUS_ARGS("a{sv}", options), SD_BUS_RESULT("s", slot),
                            Guarded<method_recovery>::call, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("Reset", SD_BUS_ARGS("a{sv}", options),
                            SD_BUS_RESULT("s", what, "b", reboot), Guarded<method_reset>::call,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_SIGNAL_WITH_ARGS(
        "Progress",
        SD_BUS_ARGS("s", phase, "d", percent, "t", bytes, "t", total, "d", rate, "d", eta_seconds),
        0),
    SD_BUS_SIGNAL_WITH_ARGS("JobFinished", SD_BUS_ARGS("s", operation, "b", success, "s", message),
                            0),
    SD_BUS_VTABLE_END,
};

}  // namespace

// Maps a failed Result to a D-Bus error reply.
int reply_error(sd_bus_error* ret_error, const Error& e) {
    const char* name = api::kErrorFailed;
    switch (e.code()) {
        case Errc::invalid_argument:
        case Errc::parse:
            name = api::kErrorInvalid;
            break;
        case Errc::busy:
            name = api::kErrorBusy;
            break;
        case Errc::permission_denied:
            name = SD_BUS_ERROR_ACCESS_DENIED;
            break;
        default:
            break;
    }
    return sd_bus_error_set(ret_error, name, valid_utf8(e.what()).c_str());
}

const sd_bus_vtable* agent_vtable() {
    return kVtable;
}

int require_root(sd_bus_message* m, sd_bus_error* ret_error, const char* action) {
    sd_bus_creds* creds = nullptr;
    // Credentials from the bus driver (SO_PEERCRED at connect time), never from /proc: a
    // racy /proc read must not decide who may rewrite a disk.
    int r = sd_bus_query_sender_creds(m, SD_BUS_CREDS_EUID | SD_BUS_CREDS_UID, &creds);
    uid_t uid = static_cast<uid_t>(-1);
    if (r >= 0) {
        if (sd_bus_creds_get_euid(creds, &uid) < 0 && sd_bus_creds_get_uid(creds, &uid) < 0)
            uid = static_cast<uid_t>(-1);
        sd_bus_creds_unref(creds);
    }
    if (uid == 0) return 0;
    const char* member = sd_bus_message_get_member(m);
    const std::string what = action ? action : member ? member : "this call";
    const long shown = uid == static_cast<uid_t>(-1) ? -1L : static_cast<long>(uid);
    spdlog::warn("denied {} to uid {}", what, shown);
    return sd_bus_error_setf(ret_error, SD_BUS_ERROR_ACCESS_DENIED,
                             "%s needs root (caller uid %ld)", what.c_str(), shown);
}

}  // namespace ballast::agent
