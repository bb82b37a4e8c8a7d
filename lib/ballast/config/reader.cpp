#include "ballast/config/reader.hpp"

#include <algorithm>

#include "ballast/core/duration.hpp"
#include "ballast/core/suggest.hpp"
#include "ballast/core/text.hpp"

namespace ballast::config {

std::optional<bool> yaml11_bool(const Node& n) {
    if (!n.is_scalar()) return std::nullopt;
    static constexpr std::string_view yes[] = {"true", "True", "TRUE", "yes", "Yes", "YES",
                                               "on",   "On",   "ON",   "y",   "Y"};
    static constexpr std::string_view no[] = {"false", "False", "FALSE", "no", "No", "NO",
                                              "off",   "Off",   "OFF",   "n",  "N"};
    for (auto y : yes)
        if (n.scalar == y) return true;
    for (auto f : no)
        if (n.scalar == f) return false;
    return std::nullopt;
}

std::optional<uint32_t> parse_mode(const Node& n) {
    if (!n.is_scalar()) return std::nullopt;
    std::string_view s = n.scalar;
    std::optional<uint32_t> v;
    if (s.size() > 2 && (s.substr(0, 2) == "0o" || s.substr(0, 2) == "0O"))
        v = parse_unsigned<uint32_t>(s.substr(2), 8);
    else if (s.size() > 1 && s.front() == '0')
        v = parse_unsigned<uint32_t>(s, 8);
    else
        v = parse_unsigned<uint32_t>(s, 10);
    if (!v || *v > 07777) return std::nullopt;
    return v;
}

MapReader::MapReader(const Node* node, Diagnostics& diags, std::string where)
    : node_(node), diags_(diags), where_(std::move(where)) {
    if (node_ && !node_->is_null() && !node_->is_mapping()) {
        diags_.error(node_->pos, where_.empty() ? fmt::format("expected a mapping, found a {}",
                                                              node_->kind_name())
                                                : fmt::format("{}: expected a mapping, found a {}",
                                                              where_, node_->kind_name()));
        ok_ = false;
    }
}

std::string MapReader::field(std::string_view key) const {
    return where_.empty() ? std::string(key) : fmt::format("{}.{}", where_, key);
}

void MapReader::check_keys(std::initializer_list<std::string_view> known, Severity severity) const {
    check_keys(std::vector<std::string_view>(known), severity);
}

void MapReader::check_keys(const std::vector<std::string_view>& known, Severity severity) const {
    if (!ok_ || !node_ || !node_->is_mapping()) return;
    for (const auto& e : node_->entries) {
        if (std::find(known.begin(), known.end(), e.key) != known.end()) continue;
        std::string msg = fmt::format("unknown key '{}'", field(e.key));
        if (auto s = closest_match(e.key, known)) msg += fmt::format(" (did you mean '{}'?)", *s);
        diags_.add({severity, e.key_pos, std::move(msg)});
    }
}

bool MapReader::has(std::string_view key) const {
    return get(key) != nullptr;
}

const Node* MapReader::get(std::string_view key) const {
    if (!ok_ || !node_) return nullptr;
    return node_->find(key);
}

Position MapReader::pos(std::string_view key) const {
    if (ok_ && node_ && node_->is_mapping())
        for (const auto& e : node_->entries)
            if (e.key == key) return e.key_pos;
    return node_ ? node_->pos : Position{};
}

void MapReader::error(std::string_view key, std::string message) const {
    const Node* n = get(key);
    diags_.error(n ? n->pos : pos(key), fmt::format("{}: {}", field(key), message));
}

void MapReader::warning(std::string_view key, std::string message) const {
    const Node* n = get(key);
    diags_.warning(n ? n->pos : pos(key), fmt::format("{}: {}", field(key), message));
}

bool MapReader::read(std::string_view key, std::string& out) const {
    const Node* n = get(key);
    if (!n || n->is_null()) return false;
    if (!n->is_scalar()) {
        error(key, fmt::format("expected a string, found a {}", n->kind_name()));
        return false;
    }
    out = n->scalar;
    return true;
}

bool MapReader::read(std::string_view key, bool& out) const {
    const Node* n = get(key);
    if (!n || n->is_null()) return false;
    auto b = yaml11_bool(*n);
    if (!b) {
        error(key, "expected true or false");
        return false;
    }
    out = *b;
    return true;
}

bool MapReader::read(std::string_view key, uint32_t& out, uint32_t min, uint32_t max) const {
    const Node* n = get(key);
    if (!n || n->is_null()) return false;
    auto v = n->is_scalar() ? parse_unsigned<uint32_t>(n->scalar) : std::nullopt;
    if (!v || *v < min || *v > max) {
        error(key, fmt::format("expected a whole number from {} to {}", min, max));
        return false;
    }
    out = *v;
    return true;
}

bool MapReader::read(std::string_view key, std::chrono::milliseconds& out) const {
    const Node* n = get(key);
    if (!n || n->is_null()) return false;
    if (!n->is_scalar()) {
        error(key, "expected a duration such as 90s, 5m or 1h30m");
        return false;
    }
    auto d = parse_duration(n->scalar);
    if (!d) {
        error(key, d.error().message());
        return false;
    }
    out = *d;
    return true;
}

bool MapReader::read(std::string_view key, std::vector<std::string>& out, bool scalar_ok) const {
    const Node* n = get(key);
    if (!n) return false;
    if (n->is_null()) {  // "key:" with no (or only commented-out) items is an empty list
        out.clear();
        return true;
    }
    if (n->is_scalar() && scalar_ok) {
        out = {n->scalar};
        return true;
    }
    if (!n->is_sequence()) {
        error(key, fmt::format("expected a list, found a {}", n->kind_name()));
        return false;
    }
    std::vector<std::string> v;
    bool good = true;
    for (const auto& item : n->items) {
        if (!item.is_scalar()) {
            diags_.error(item.pos, fmt::format("{}: list items must be strings, found a {}",
                                               field(key), item.kind_name()));
            good = false;
            continue;
        }
        v.push_back(item.scalar);
    }
    if (good) out = std::move(v);
    return good;
}

bool MapReader::read(std::string_view key, std::map<std::string, std::string>& out) const {
    const Node* n = get(key);
    if (!n || n->is_null()) return false;
    if (!n->is_mapping()) {
        error(key, fmt::format("expected a mapping, found a {}", n->kind_name()));
        return false;
    }
    std::map<std::string, std::string> m;
    bool good = true;
    for (const auto& e : n->entries) {
        if (e.value.is_null()) {
            m[e.key] = "";
        } else if (e.value.is_scalar()) {
            m[e.key] = e.value.scalar;
        } else {
            diags_.error(e.value.pos, fmt::format("{}.{}: expected a string, found a {}",
                                                  field(key), e.key, e.value.kind_name()));
            good = false;
        }
    }
    if (good) out = std::move(m);
    return good;
}

bool MapReader::read_mode(std::string_view key, std::optional<uint32_t>& out) const {
    const Node* n = get(key);
    if (!n || n->is_null()) return false;
    auto mode = parse_mode(*n);
    if (!mode) {
        error(key, "expected a file mode such as 0644");
        return false;
    }
    // YAML 1.1 reads 644 as decimal 644 (mode 01204). Three digits spelt like a common mode
    // (first 4, 6 or 7; digits from 0, 4-7) were almost certainly meant as octal; decimal
    // spellings of modes (420, 493, 384) do not look like that.
    auto looks_octal = [](std::string_view s) {
        return s.size() == 3 && (s[0] == '4' || s[0] == '6' || s[0] == '7') &&
               std::all_of(s.begin(), s.end(),
                           [](char c) { return c == '0' || (c >= '4' && c <= '7'); });
    };
    if (n->is_scalar() && looks_octal(n->scalar))
        warning(key, fmt::format("{} is decimal (mode {:04o}); write 0{} for octal", n->scalar,
                                 *mode, n->scalar));
    out = mode;
    return true;
}

MapReader MapReader::sub(std::string_view key) const {
    return MapReader(get(key), diags_, field(key));
}

}  // namespace ballast::config
