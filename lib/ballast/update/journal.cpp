#include "ballast/update/journal.hpp"

#include <cerrno>

#include "ballast/core/atomic_file.hpp"
#include "ballast/core/duration.hpp"
#include "ballast/core/json.hpp"

namespace ballast::update {
namespace {

constexpr std::pair<JobState, std::string_view> kStates[] = {
    {JobState::writing, "writing"},
    {JobState::staged, "staged"},
    {JobState::committed, "committed"},
    {JobState::failed, "failed"},
};

Result<std::optional<std::string>> read_optional(const std::filesystem::path& path) {
    auto text = read_file(path, 1u << 20);
    if (!text) {
        if (text.error().sys_errno() == ENOENT) return std::optional<std::string>();
        return std::unexpected(text.error());
    }
    return std::optional<std::string>(std::move(*text));
}

}  // namespace

std::string_view name(JobState s) {
    for (const auto& [k, v] : kStates)
        if (k == s) return v;
    return "?";
}

nlohmann::json Journal::to_json() const {
    return {{"state", name(state)},
            {"target", boot::name(target)},
            {"from", boot::name(from)},
            {"source", source},
            {"version", version},
            {"from_version", from_version},
            {"manifest_sha256", manifest_sha256},
            {"tries", tries},
            {"force", force},
            {"reboot", reboot},
            {"bytes_done", bytes_done},
            {"started", started},
            {"updated", updated},
            {"error", error}};
}

Result<Journal> parse_journal(std::string_view text, const std::string& where) {
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object())
        return fail(Errc::parse, "{}: not a JSON object", where);
    Journal out;
    auto str = [&](const char* key, std::string& dst) -> Status {
        auto it = j.find(key);
        if (it == j.end() || !it->is_string())
            return fail(Errc::parse, "{}: {}: missing or not a string", where, key);
        dst = it->get<std::string>();
        return {};
    };
    std::string state, target, from;
    BALLAST_TRY(str("state", state));
    BALLAST_TRY(str("target", target));
    BALLAST_TRY(str("from", from));
    BALLAST_TRY(str("source", out.source));
    BALLAST_TRY(str("version", out.version));
    BALLAST_TRY(str("from_version", out.from_version));
    BALLAST_TRY(str("manifest_sha256", out.manifest_sha256));
    BALLAST_TRY(str("started", out.started));
    BALLAST_TRY(str("updated", out.updated));
    BALLAST_TRY(str("error", out.error));
    bool known = false;
    for (const auto& [k, v] : kStates)
        if (v == state) {
            out.state = k;
            known = true;
        }
    if (!known) return fail(Errc::parse, "{}: state: unknown value '{}'", where, state);
    // A damaged journal is a parse error whatever field is wrong.
    auto slot_of = [&](const char* key, const std::string& v) -> Result<boot::Slot> {
        auto s = boot::parse_slot(v);
        if (!s) return fail(Errc::parse, "{}: {}: {}", where, key, s.error().what());
        return *s;
    };
    out.target = BALLAST_TRY(slot_of("target", target));
    out.from = BALLAST_TRY(slot_of("from", from));
    if (out.target == out.from)
        return fail(Errc::parse, "{}: target and from are both {}", where, target);
    auto tries = j.find("tries");
    // As int64_t: get<int>() would wrap 4294967297 to 1. Unsigned values past INT64_MAX come
    // out negative and are refused as well.
    if (tries == j.end() || !tries->is_number_integer() || tries->get<int64_t>() < 1 ||
        tries->get<int64_t>() > 9)
        return fail(Errc::parse, "{}: tries: expected 1..9", where);
    out.tries = tries->get<int>();
    auto bytes = j.find("bytes_done");
    if (bytes == j.end() || !bytes->is_number_unsigned())
        return fail(Errc::parse, "{}: bytes_done: expected a byte count", where);
    out.bytes_done = bytes->get<uint64_t>();
    auto force = j.find("force");
    if (force == j.end() || !force->is_boolean())
        return fail(Errc::parse, "{}: force: expected true or false", where);
    out.force = force->get<bool>();
    // Absent in journals written before the field existed.
    auto reboot = j.find("reboot");
    if (reboot != j.end() && !reboot->is_boolean())
        return fail(Errc::parse, "{}: reboot: expected true or false", where);
    out.reboot = reboot == j.end() || reboot->get<bool>();
    return out;
}

Result<std::optional<Journal>> load_journal(const std::filesystem::path& path) {
    auto text = BALLAST_TRY(read_optional(path));
    if (!text) return std::optional<Journal>();
    return std::optional<Journal>(BALLAST_TRY(parse_journal(*text, path.string())));
}

Status save_journal(const std::filesystem::path& path, Journal j) {
    j.updated = now_utc();
    std::error_code ec;
    std::filesystem::create_directories(path.parent_path(), ec);
    return write_file_atomic(path, json_text(j.to_json(), 2) + "\n");
}

Result<std::vector<Refused>> load_refused(const std::filesystem::path& path) {
    std::vector<Refused> out;
    auto text = BALLAST_TRY(read_optional(path));
    if (!text) return out;
    auto j = nlohmann::json::parse(*text, nullptr, false);
    if (j.is_discarded() || !j.is_array())
        return fail(Errc::parse, "{}: not a JSON array", path.string());
    for (const auto& e : j) {
        if (!e.is_object() || !e.contains("version") || !e["version"].is_string())
            return fail(Errc::parse, "{}: an entry without a version", path.string());
        // value() throws on a present value of another type: damage, reported as such.
        for (const char* key : {"reason", "at"})
            if (e.contains(key) && !e[key].is_string())
                return fail(Errc::parse, "{}: an entry with a reason or time that is not a string",
                            path.string());
        out.push_back({e["version"].get<std::string>(), e.value("reason", ""), e.value("at", "")});
    }
    return out;
}

namespace {
Status save_refused(const std::filesystem::path& path, const std::vector<Refused>& list) {
    auto j = nlohmann::json::array();
    for (const auto& r : list)
        j.push_back({{"version", r.version}, {"reason", r.reason}, {"at", r.at}});
    std::error_code ec;
    std::filesystem::create_directories(path.parent_path(), ec);
    return write_file_atomic(path, json_text(j, 2) + "\n");
}
}  // namespace

Status add_refused(const std::filesystem::path& path, Refused r) {
    auto list = BALLAST_TRY(load_refused(path));
    std::erase_if(list, [&](const Refused& x) { return x.version == r.version; });
    if (r.at.empty()) r.at = now_utc();
    list.push_back(std::move(r));
    return save_refused(path, list);
}

Status remove_refused(const std::filesystem::path& path, const std::string& version) {
    auto list = BALLAST_TRY(load_refused(path));
    auto n = std::erase_if(list, [&](const Refused& x) { return x.version == version; });
    if (n == 0) return {};
    return save_refused(path, list);
}

}  // namespace ballast::update
