// Field tables: each config block (a step, a file item, install:, agent.yaml's tpm:, ...) is one
// constant table of its keys. The same table checks for unknown keys, reads every value into the
// typed model and describes the block for `agentctl config schema`, so a key is written once.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "ballast/config/diagnostics.hpp"
#include "ballast/config/reader.hpp"

namespace ballast::config {

struct DecodeContext {
    const nlohmann::json& facts;  // template data
    Diagnostics& diags;
};

// What a field holds, as the schema describes it.
enum class FieldKind : uint8_t {
    string,
    boolean,
    integer,
    duration,           // "90s", "5m", "1h30m"
    mode,               // a file mode: 0644, "0644", "0o644"
    strings,            // a list of strings
    string_or_list,     // one string or a list of strings
    string_map,         // a mapping of strings to strings
    list_map,           // a mapping of strings to lists of strings
    block,              // a nested block (FieldInfo::block names it)
    block_list,         // a list of blocks
    block_map,          // a mapping of names to blocks
    block_list_map,     // a mapping of names to lists of blocks (stages)
    block_list_or_map,  // a list of blocks, or a mapping of names to blocks (users)
    commands,           // a command string, or a list of strings and argument lists
    any,                // anything (validated elsewhere or not used)
};

struct FieldInfo {
    std::string_view key;
    FieldKind kind;
    std::string_view help;
    std::string_view block = {};  // for the block kinds: the nested block's table name
};

// Reads one key into the block's model. It runs whether the key is present or not (so that it
// can report a required key) and leaves `out` untouched when the value is absent or wrong.
template <class T>
using ReadField = void (*)(const MapReader&, std::string_view key, T& out, DecodeContext&);

template <class T>
struct Field {
    FieldInfo info;
    ReadField<T> read = nullptr;  // null: a known key Ballast accepts and does not use
};

template <class T>
struct Table {
    using Model = T;
    std::string_view name;  // the block's name in the schema ("step", "install", "tpm")
    std::string_view help;
    Severity unknown_keys;  // cloud-config warns (Kairos files carry keys of their own)
    std::span<const Field<T>> fields;

    [[nodiscard]] std::vector<std::string_view> keys() const {
        std::vector<std::string_view> out;
        for (const auto& f : fields)
            out.push_back(f.info.key);
        return out;
    }

    // Checks the keys of the mapping `r` reads, then reads every field in table order.
    void decode(const MapReader& r, T& out, DecodeContext& ctx) const {
        r.check_keys(keys(), unknown_keys);
        read_fields(r, out, ctx);
    }
    // Reads without checking the keys (checked elsewhere).
    void read_fields(const MapReader& r, T& out, DecodeContext& ctx) const {
        for (const auto& f : fields)
            if (f.read) f.read(r, f.info.key, out, ctx);
    }
};

// A table without its model type, for the schema.
struct BlockInfo {
    std::string_view name, help;
    Severity unknown_keys;
    std::vector<FieldInfo> fields;
};

template <class T>
[[nodiscard]] BlockInfo describe(const Table<T>& t) {
    BlockInfo b{t.name, t.help, t.unknown_keys, {}};
    for (const auto& f : t.fields)
        b.fields.push_back(f.info);
    return b;
}

// Shared validators: an empty view when the value is fine, else what is wrong with it.
using Check = std::string_view (*)(const std::string&);
[[nodiscard]] std::string_view absolute_path(const std::string& s);
// The same, or "" for none.
[[nodiscard]] std::string_view optional_absolute_path(const std::string& s);

// Readers for the common cases. `M` is a pointer to the member the key fills.
namespace read {

// The value as MapReader::read types the member (string, bool, duration, list, map).
template <auto M, class T>
void value(const MapReader& r, std::string_view key, T& out, DecodeContext&) {
    (void)r.read(key, out.*M);
}

// One string or a list of strings.
template <auto M, class T>
void one_or_list(const MapReader& r, std::string_view key, T& out, DecodeContext&) {
    (void)r.read(key, out.*M, true);
}

template <auto M, uint32_t Min, uint32_t Max, class T>
void number(const MapReader& r, std::string_view key, T& out, DecodeContext&) {
    (void)r.read(key, out.*M, Min, Max);
}

template <auto M, class T>
void mode(const MapReader& r, std::string_view key, T& out, DecodeContext&) {
    (void)r.read_mode(key, out.*M);
}

// The value, then a shared validator on it.
template <auto M, Check C, class T>
void checked(const MapReader& r, std::string_view key, T& out, DecodeContext&) {
    if (r.read(key, out.*M))
        if (auto problem = C(out.*M); !problem.empty()) r.error(key, std::string(problem));
}

// A nested block read with its own table.
template <auto M, const auto& Sub, class T>
void block(const MapReader& r, std::string_view key, T& out, DecodeContext& ctx) {
    Sub.decode(r.sub(key), out.*M, ctx);
}

// A nested block whose fields fill the same model.
template <const auto& Sub, class T>
void same(const MapReader& r, std::string_view key, T& out, DecodeContext& ctx) {
    Sub.decode(r.sub(key), out, ctx);
}

// A key Kairos or yip knows and Ballast ignores: a warning naming the reason.
template <const char* Why, class T>
void warned(const MapReader& r, std::string_view key, T&, DecodeContext&) {
    if (r.has(key)) r.warning(key, Why);
}

// A key Kairos or yip knows and Ballast refuses: an error naming the reason.
template <const char* Why, class T>
void refused(const MapReader& r, std::string_view key, T&, DecodeContext&) {
    if (r.has(key)) r.error(key, Why);
}

}  // namespace read

}  // namespace ballast::config
