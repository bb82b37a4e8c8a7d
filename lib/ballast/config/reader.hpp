// Typed reading of a config tree with every problem recorded at its position. Reading never
// stops at the first problem, so a user sees every mistake in one run.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ballast/config/diagnostics.hpp"
#include "ballast/config/tree.hpp"

namespace ballast::config {

// YAML 1.1 scalar typing, as users of Kairos and k3OS files expect.
[[nodiscard]] std::optional<bool> yaml11_bool(const Node& n);
// File modes: "0644", 0644, "0o644" are octal; a plain number without a leading zero is decimal
// (YAML 1.1), so `420` is 0644. nullopt when not a mode (or above 07777).
[[nodiscard]] std::optional<uint32_t> parse_mode(const Node& n);

class MapReader {
  public:
    // `node` may be null (read as an empty mapping) or absent (nullptr).
    MapReader(const Node* node, Diagnostics& diags, std::string where);

    [[nodiscard]] bool ok() const { return ok_; }
    [[nodiscard]] const Node* node() const { return node_; }
    [[nodiscard]] const std::string& where() const { return where_; }
    [[nodiscard]] Diagnostics& diags() const { return diags_; }
    // Dotted name of a field of this mapping, for messages ("stages.boot[0].files").
    [[nodiscard]] std::string field(std::string_view key) const;

    // Unknown keys get a did-you-mean, as errors or warnings.
    void check_keys(std::initializer_list<std::string_view> known, Severity severity) const;
    void check_keys(const std::vector<std::string_view>& known, Severity severity) const;

    [[nodiscard]] bool has(std::string_view key) const;
    [[nodiscard]] const Node* get(std::string_view key) const;
    [[nodiscard]] Position pos(std::string_view key) const;

    // Each reader leaves `out` untouched when the key is absent or the value is wrong.
    bool read(std::string_view key, std::string& out) const;
    bool read(std::string_view key, bool& out) const;
    bool read(std::string_view key, uint32_t& out, uint32_t min, uint32_t max) const;
    bool read(std::string_view key, std::chrono::milliseconds& out) const;
    // A list of strings; null is an empty list; with `scalar_ok` a single string is a list of one.
    bool read(std::string_view key, std::vector<std::string>& out, bool scalar_ok = false) const;
    // A mapping of strings to strings (sysctl, env).
    bool read(std::string_view key, std::map<std::string, std::string>& out) const;
    bool read_mode(std::string_view key, std::optional<uint32_t>& out) const;

    [[nodiscard]] MapReader sub(std::string_view key) const;

    void error(std::string_view key, std::string message) const;
    void warning(std::string_view key, std::string message) const;

  private:
    const Node* node_;
    Diagnostics& diags_;
    std::string where_;
    bool ok_ = true;
};

}  // namespace ballast::config
