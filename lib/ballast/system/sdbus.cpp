#include "ballast/system/sdbus.hpp"
#include "ballast/core/json.hpp"

#include <cerrno>
#include <cstdlib>

namespace ballast::sdbus {
namespace {

Status check(int r, std::string_view what) {
    if (r < 0) return fail_errno(r, what);
    return {};
}

// Reads one complete value of the type at the read position (not wrapped in a variant).
Result<nlohmann::json> read_value(sd_bus_message* m);

Result<nlohmann::json> read_array(sd_bus_message* m, const char* contents) {
    BALLAST_TRY(
        check(sd_bus_message_enter_container(m, SD_BUS_TYPE_ARRAY, contents), "read array"));
    const bool dict = contents[0] == SD_BUS_TYPE_DICT_ENTRY_BEGIN;
    nlohmann::json out = dict ? nlohmann::json::object() : nlohmann::json::array();
    for (;;) {
        int r = sd_bus_message_at_end(m, false);
        BALLAST_TRY(check(r, "read array"));
        if (r > 0) break;
        if (dict) {
            char t;
            const char* c;
            BALLAST_TRY(check(sd_bus_message_peek_type(m, &t, &c), "read dict entry"));
            BALLAST_TRY(check(sd_bus_message_enter_container(m, SD_BUS_TYPE_DICT_ENTRY, c),
                              "read dict entry"));
            auto key = BALLAST_TRY(read_value(m));
            auto val = BALLAST_TRY(read_value(m));
            BALLAST_TRY(check(sd_bus_message_exit_container(m), "read dict entry"));
            out[key.is_string() ? key.get<std::string>() : json_text(key)] = std::move(val);
        } else {
            out.push_back(BALLAST_TRY(read_value(m)));
        }
    }
    BALLAST_TRY(check(sd_bus_message_exit_container(m), "read array"));
    return out;
}

Result<nlohmann::json> read_value(sd_bus_message* m) {
    char type;
    const char* contents = nullptr;
    int r = sd_bus_message_peek_type(m, &type, &contents);
    BALLAST_TRY(check(r, "read value"));
    if (r == 0) return fail(Errc::parse, "read value: message ended early");
    switch (type) {
        case SD_BUS_TYPE_STRING:
        case SD_BUS_TYPE_OBJECT_PATH:
        case SD_BUS_TYPE_SIGNATURE: {
            const char* s;
            BALLAST_TRY(check(sd_bus_message_read_basic(m, type, &s), "read string"));
            return nlohmann::json(s);
        }
        case SD_BUS_TYPE_BOOLEAN: {
            int b;
            BALLAST_TRY(check(sd_bus_message_read_basic(m, type, &b), "read bool"));
            return nlohmann::json(b != 0);
        }
        case SD_BUS_TYPE_BYTE: {
            uint8_t v;
            BALLAST_TRY(check(sd_bus_message_read_basic(m, type, &v), "read byte"));
            return nlohmann::json(v);
        }
        case SD_BUS_TYPE_INT16: {
            int16_t v;
            BALLAST_TRY(check(sd_bus_message_read_basic(m, type, &v), "read int16"));
            return nlohmann::json(v);
        }
        case SD_BUS_TYPE_UINT16: {
            uint16_t v;
            BALLAST_TRY(check(sd_bus_message_read_basic(m, type, &v), "read uint16"));
            return nlohmann::json(v);
        }
        case SD_BUS_TYPE_INT32: {
            int32_t v;
            BALLAST_TRY(check(sd_bus_message_read_basic(m, type, &v), "read int32"));
            return nlohmann::json(v);
        }
        case SD_BUS_TYPE_UINT32: {
            uint32_t v;
            BALLAST_TRY(check(sd_bus_message_read_basic(m, type, &v), "read uint32"));
            return nlohmann::json(v);
        }
        case SD_BUS_TYPE_INT64: {
            int64_t v;
            BALLAST_TRY(check(sd_bus_message_read_basic(m, type, &v), "read int64"));
            return nlohmann::json(v);
        }
        case SD_BUS_TYPE_UINT64: {
            uint64_t v;
            BALLAST_TRY(check(sd_bus_message_read_basic(m, type, &v), "read uint64"));
            return nlohmann::json(v);
        }
        case SD_BUS_TYPE_DOUBLE: {
            double v;
            BALLAST_TRY(check(sd_bus_message_read_basic(m, type, &v), "read double"));
            return nlohmann::json(v);
        }
        case SD_BUS_TYPE_VARIANT: {
            BALLAST_TRY(check(sd_bus_message_enter_container(m, SD_BUS_TYPE_VARIANT, contents),
                              "read variant"));
            auto v = BALLAST_TRY(read_value(m));
            BALLAST_TRY(check(sd_bus_message_exit_container(m), "read variant"));
            return v;
        }
        case SD_BUS_TYPE_ARRAY:
            return read_array(m, contents);
        case SD_BUS_TYPE_STRUCT: {
            BALLAST_TRY(check(sd_bus_message_enter_container(m, SD_BUS_TYPE_STRUCT, contents),
                              "read struct"));
            nlohmann::json out = nlohmann::json::array();
            for (;;) {
                int e = sd_bus_message_at_end(m, false);
                BALLAST_TRY(check(e, "read struct"));
                if (e > 0) break;
                out.push_back(BALLAST_TRY(read_value(m)));
            }
            BALLAST_TRY(check(sd_bus_message_exit_container(m), "read struct"));
            return out;
        }
        default:
            return fail(Errc::unsupported, "read value: unsupported D-Bus type '{}'", type);
    }
}

}  // namespace

std::optional<std::string> effective_address(const std::string& explicit_address) {
    if (!explicit_address.empty()) return explicit_address;
    if (const char* env = std::getenv("BALLAST_BUS_ADDRESS"); env && *env) return std::string(env);
    return std::nullopt;
}

Result<Bus> connect(const std::optional<std::string>& address) {
    sd_bus* raw = nullptr;
    if (!address) {
        int r = sd_bus_open_system(&raw);
        if (r < 0) return fail_errno(r, "connect to the system bus");
        return Bus(raw);
    }
    BALLAST_TRY(check(sd_bus_new(&raw), "sd_bus_new"));
    Bus bus(raw);
    BALLAST_TRY(check(sd_bus_set_address(bus.get(), address->c_str()), "bus address " + *address));
    BALLAST_TRY(check(sd_bus_set_bus_client(bus.get(), 1), "bus client"));
    BALLAST_TRY(check(sd_bus_negotiate_creds(bus.get(), 1, SD_BUS_CREDS_UID | SD_BUS_CREDS_EUID),
                      "bus creds"));
    int r = sd_bus_start(bus.get());
    if (r < 0) return fail_errno(r, "connect to bus " + *address);
    return bus;
}

Error bus_error(int r, const BusError& e, std::string_view what) {
    if (e.is_set()) {
        Errc code = Errc::failed;
        const auto n = e.name();
        if (n == SD_BUS_ERROR_ACCESS_DENIED)
            code = Errc::permission_denied;
        else if (n == SD_BUS_ERROR_SERVICE_UNKNOWN || n == SD_BUS_ERROR_NAME_HAS_NO_OWNER ||
                 n == SD_BUS_ERROR_NO_REPLY || n == SD_BUS_ERROR_DISCONNECTED)
            code = Errc::unavailable;
        else if (n == SD_BUS_ERROR_INVALID_ARGS)
            code = Errc::invalid_argument;
        else if (n == "org.ballast.Agent1.Error.Busy")
            code = Errc::busy;
        Error err(code, e.message().empty() ? n : e.message());
        return std::move(err).context(std::string(what));
    }
    return fail_errno(r, what).error();
}

Status append_variant(sd_bus_message* m, const nlohmann::json& v) {
    using nlohmann::json;
    int r;
    switch (v.type()) {
        case json::value_t::string:
            r = sd_bus_message_append(m, "v", "s", valid_utf8(v.get<std::string>()).c_str());
            break;
        case json::value_t::null:
            r = sd_bus_message_append(m, "v", "s", "");
            break;
        case json::value_t::boolean:
            r = sd_bus_message_append(m, "v", "b", v.get<bool>() ? 1 : 0);
            break;
        case json::value_t::number_integer:
            r = sd_bus_message_append(m, "v", "x", v.get<int64_t>());
            break;
        case json::value_t::number_unsigned:
            r = sd_bus_message_append(m, "v", "t", v.get<uint64_t>());
            break;
        case json::value_t::number_float:
            r = sd_bus_message_append(m, "v", "d", v.get<double>());
            break;
        case json::value_t::object:
            BALLAST_TRY(check(sd_bus_message_open_container(m, 'v', "a{sv}"), "append variant"));
            BALLAST_TRY(append_dict(m, v));
            r = sd_bus_message_close_container(m);
            break;
        case json::value_t::array: {
            bool all_objects = !v.empty(), all_strings = true;
            for (const auto& e : v) {
                all_objects = all_objects && e.is_object();
                all_strings = all_strings && e.is_string();
            }
            if (all_objects) {
                BALLAST_TRY(
                    check(sd_bus_message_open_container(m, 'v', "aa{sv}"), "append variant"));
                BALLAST_TRY(check(sd_bus_message_open_container(m, 'a', "a{sv}"), "append array"));
                for (const auto& e : v)
                    BALLAST_TRY(append_dict(m, e));
                BALLAST_TRY(check(sd_bus_message_close_container(m), "append array"));
            } else if (all_strings) {
                BALLAST_TRY(check(sd_bus_message_open_container(m, 'v', "as"), "append variant"));
                BALLAST_TRY(check(sd_bus_message_open_container(m, 'a', "s"), "append array"));
                for (const auto& e : v)
                    BALLAST_TRY(check(sd_bus_message_append_basic(
                                          m, 's', valid_utf8(e.get<std::string>()).c_str()),
                                      "append string"));
                BALLAST_TRY(check(sd_bus_message_close_container(m), "append array"));
            } else {
                BALLAST_TRY(check(sd_bus_message_open_container(m, 'v', "av"), "append variant"));
                BALLAST_TRY(check(sd_bus_message_open_container(m, 'a', "v"), "append array"));
                for (const auto& e : v)
                    BALLAST_TRY(append_variant(m, e));
                BALLAST_TRY(check(sd_bus_message_close_container(m), "append array"));
            }
            r = sd_bus_message_close_container(m);
            break;
        }
        default:
            return fail(Errc::unsupported, "append variant: unsupported JSON value");
    }
    return check(r, "append variant");
}

Status append_dict(sd_bus_message* m, const nlohmann::json& object) {
    BALLAST_TRY(check(sd_bus_message_open_container(m, 'a', "{sv}"), "append dict"));
    for (const auto& [k, v] : object.items()) {
        BALLAST_TRY(check(sd_bus_message_open_container(m, 'e', "sv"), "append dict entry"));
        BALLAST_TRY(
            check(sd_bus_message_append_basic(m, 's', valid_utf8(k).c_str()), "append key"));
        BALLAST_TRY(append_variant(m, v));
        BALLAST_TRY(check(sd_bus_message_close_container(m), "append dict entry"));
    }
    return check(sd_bus_message_close_container(m), "append dict");
}

Result<nlohmann::json> read_variant(sd_bus_message* m) {
    return read_value(m);
}

Result<nlohmann::json> read_dict(sd_bus_message* m) {
    auto v = BALLAST_TRY(read_array(m, "{sv}"));
    return v;
}

}  // namespace ballast::sdbus
