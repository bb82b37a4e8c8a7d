// A YAML document as a tree that remembers where every node came from (file, line, column),
// so files can be merged and every value still names its source. yaml-cpp parses; this tree is
// what the rest of Ballast reads.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "ballast/config/diagnostics.hpp"
#include "ballast/core/result.hpp"

namespace ballast::config {

struct Entry;

struct Node {
    enum class Kind { null, scalar, sequence, mapping };
    Kind kind = Kind::null;
    Position pos;
    std::string scalar;          // scalar text as written (after YAML unquoting)
    bool plain = true;           // scalar was unquoted (YAML 1.1 typing applies)
    std::vector<Node> items;     // sequence
    std::vector<Entry> entries;  // mapping, in file order

    [[nodiscard]] bool is_null() const { return kind == Kind::null; }
    [[nodiscard]] bool is_scalar() const { return kind == Kind::scalar; }
    [[nodiscard]] bool is_sequence() const { return kind == Kind::sequence; }
    [[nodiscard]] bool is_mapping() const { return kind == Kind::mapping; }
    // Mapping lookup; nullptr when absent or not a mapping.
    [[nodiscard]] const Node* find(std::string_view key) const;
    [[nodiscard]] Node* find(std::string_view key);
    // "scalar", "list", "mapping", "null" for messages.
    [[nodiscard]] std::string_view kind_name() const;
};

struct Entry {
    std::string key;
    Position key_pos;
    Node value;
};

// Parses one YAML document. A syntax error fails with "file:line:col: message" (and is also
// added to `diags`); duplicate keys and non-scalar keys are reported as errors in `diags` (the
// first occurrence is kept).
[[nodiscard]] Result<Node> parse_tree(std::string_view text, std::string_view file,
                                      Diagnostics& diags);

// Deep merge of `overlay` into `base`: mappings merge key by key, sequences append, anything
// else is replaced by the overlay (later files win). Positions travel with the values.
void merge_tree(Node& base, const Node& overlay);

}  // namespace ballast::config
