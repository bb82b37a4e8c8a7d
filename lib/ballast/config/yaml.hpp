// yaml-cpp with positions: parse errors and every finding about a node name file:line:col.
#pragma once

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "ballast/config/diagnostics.hpp"
#include "ballast/core/result.hpp"

namespace ballast::config {

// Parses one YAML document. A syntax error becomes Errc::parse with "file:line:col: message".
// An empty document yields a Null node.
[[nodiscard]] Result<YAML::Node> parse_yaml(std::string_view text, std::string_view file);

[[nodiscard]] Position position_of(std::string_view file, const YAML::Node& node);

// Reads typed values out of one mapping, recording every problem in a Diagnostics with the
// node's position. Reading never throws and never stops at the first problem, so a user sees
// every mistake in one run.
class MapReader {
  public:
    MapReader(const YAML::Node& map, std::string_view file, Diagnostics& diags,
              std::string_view where);

    // Valid when the node was a mapping (or null/absent, read as empty).
    [[nodiscard]] bool ok() const { return ok_; }

    // Reports keys not in `known`, with a did-you-mean, as errors or warnings.
    void check_keys(std::initializer_list<std::string_view> known, Severity severity) const;

    [[nodiscard]] bool has(std::string_view key) const;
    [[nodiscard]] YAML::Node node(std::string_view key) const;
    [[nodiscard]] Position pos(std::string_view key) const;

    void read(std::string_view key, std::string& out) const;
    void read(std::string_view key, bool& out) const;
    void read(std::string_view key, uint32_t& out, uint32_t min, uint32_t max) const;
    void read(std::string_view key, std::chrono::milliseconds& out) const;
    void read(std::string_view key, std::vector<std::string>& out) const;
    // Reads a sub-mapping.
    [[nodiscard]] MapReader sub(std::string_view key) const;

    [[nodiscard]] std::string_view file() const { return file_; }
    [[nodiscard]] Diagnostics& diags() const { return diags_; }

  private:
    [[nodiscard]] std::string field(std::string_view key) const;
    YAML::Node map_;
    std::string file_;
    Diagnostics& diags_;
    std::string where_;  // dotted path of this mapping ("health"), for messages
    bool ok_ = true;
};

}  // namespace ballast::config
