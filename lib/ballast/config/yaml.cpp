#include "ballast/config/yaml.hpp"

#include <limits>
#include <vector>

#include "ballast/core/duration.hpp"
#include "ballast/core/suggest.hpp"

namespace ballast::config {

Result<YAML::Node> parse_yaml(std::string_view text, std::string_view file) {
    try {
        return YAML::Load(std::string(text));
    } catch (const YAML::Exception& e) {
        Position p{std::string(file), e.mark.is_null() ? 0 : e.mark.line + 1,
                   e.mark.is_null() ? 0 : e.mark.column + 1};
        return fail(Errc::parse, "{}: {}", to_string(p), e.msg);
    }
}

Position position_of(std::string_view file, const YAML::Node& node) {
    auto m = node.Mark();
    if (m.is_null()) return {std::string(file), 0, 0};
    return {std::string(file), m.line + 1, m.column + 1};
}

MapReader::MapReader(const YAML::Node& map, std::string_view file, Diagnostics& diags,
                     std::string_view where)
    : map_(map), file_(file), diags_(diags), where_(where) {
    if (map_.IsDefined() && !map_.IsNull() && !map_.IsMap()) {
        diags_.error(position_of(file_, map_), where_.empty()
                                                   ? std::string("expected a mapping")
                                                   : fmt::format("{}: expected a mapping", where_));
        ok_ = false;
    }
}

std::string MapReader::field(std::string_view key) const {
    return where_.empty() ? std::string(key) : fmt::format("{}.{}", where_, key);
}

bool MapReader::has(std::string_view key) const {
    return ok_ && map_.IsMap() && map_[std::string(key)].IsDefined();
}

YAML::Node MapReader::node(std::string_view key) const {
    if (!ok_ || !map_.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
    return map_[std::string(key)];
}

Position MapReader::pos(std::string_view key) const {
    if (!ok_ || !map_.IsMap()) return position_of(file_, map_);
    for (const auto& kv : map_)
        if (kv.first.IsScalar() && kv.first.Scalar() == key) return position_of(file_, kv.first);
    return position_of(file_, map_);
}

void MapReader::check_keys(std::initializer_list<std::string_view> known, Severity severity) const {
    if (!ok_ || !map_.IsMap()) return;
    std::vector<std::string_view> cands(known);
    for (const auto& kv : map_) {
        if (!kv.first.IsScalar()) {
            diags_.error(position_of(file_, kv.first), "keys must be plain strings");
            continue;
        }
        const std::string& k = kv.first.Scalar();
        bool found = false;
        for (auto c : known)
            found = found || c == k;
        if (found) continue;
        std::string msg = fmt::format("unknown key '{}'", field(k));
        if (auto s = closest_match(k, cands)) msg += fmt::format(" (did you mean '{}'?)", *s);
        diags_.add({severity, position_of(file_, kv.first), std::move(msg)});
    }
}

void MapReader::read(std::string_view key, std::string& out) const {
    auto n = node(key);
    if (!n.IsDefined() || n.IsNull()) return;
    if (!n.IsScalar()) {
        diags_.error(position_of(file_, n), fmt::format("{}: expected a string", field(key)));
        return;
    }
    out = n.Scalar();
}

void MapReader::read(std::string_view key, bool& out) const {
    auto n = node(key);
    if (!n.IsDefined() || n.IsNull()) return;
    // YAML 1.1 booleans as users write them.
    static const std::vector<std::string_view> yes{"true", "True", "TRUE", "yes", "Yes",
                                                   "YES",  "on",   "On",   "ON"};
    static const std::vector<std::string_view> no{"false", "False", "FALSE", "no", "No",
                                                  "NO",    "off",   "Off",   "OFF"};
    if (n.IsScalar()) {
        for (auto y : yes)
            if (n.Scalar() == y) return void(out = true);
        for (auto f : no)
            if (n.Scalar() == f) return void(out = false);
    }
    diags_.error(position_of(file_, n), fmt::format("{}: expected true or false", field(key)));
}

void MapReader::read(std::string_view key, uint32_t& out, uint32_t min, uint32_t max) const {
    auto n = node(key);
    if (!n.IsDefined() || n.IsNull()) return;
    const std::string& s = n.IsScalar() ? n.Scalar() : std::string();
    uint64_t v = 0;
    bool digits = !s.empty() && s.size() <= 10;
    for (char c : s)
        digits = digits && c >= '0' && c <= '9';
    if (digits) v = std::stoull(s);
    if (!digits || v < min || v > max) {
        diags_.error(position_of(file_, n), fmt::format("{}: expected a whole number from {} to {}",
                                                        field(key), min, max));
        return;
    }
    out = static_cast<uint32_t>(v);
}

void MapReader::read(std::string_view key, std::chrono::milliseconds& out) const {
    auto n = node(key);
    if (!n.IsDefined() || n.IsNull()) return;
    auto d = n.IsScalar() ? parse_duration(n.Scalar())
                          : Result<std::chrono::milliseconds>(
                                fail(Errc::invalid_argument, "expected a duration"));
    if (!d) {
        diags_.error(position_of(file_, n), fmt::format("{}: {}", field(key), d.error().what()));
        return;
    }
    out = *d;
}

void MapReader::read(std::string_view key, std::vector<std::string>& out) const {
    auto n = node(key);
    if (!n.IsDefined()) return;
    if (n.IsNull()) {  // "key:" with no (or only commented-out) items is an empty list
        out.clear();
        return;
    }
    if (!n.IsSequence()) {
        diags_.error(position_of(file_, n), fmt::format("{}: expected a list", field(key)));
        return;
    }
    std::vector<std::string> v;
    for (const auto& item : n) {
        if (!item.IsScalar()) {
            diags_.error(position_of(file_, item),
                         fmt::format("{}: list items must be strings", field(key)));
            continue;
        }
        v.push_back(item.Scalar());
    }
    out = std::move(v);
}

MapReader MapReader::sub(std::string_view key) const {
    return MapReader(node(key), file_, diags_, field(key));
}

}  // namespace ballast::config
