#include "ballast/config/tree.hpp"

#include <yaml-cpp/yaml.h>

#include <unordered_set>

namespace ballast::config {
namespace {

Position pos_of(std::string_view file, const YAML::Mark& m) {
    if (m.is_null()) return {std::string(file), 0, 0};
    return {std::string(file), m.line + 1, m.column + 1};
}

// Aliases make the YAML a graph: "&a [*a]" contains itself and a few lines of aliases to
// aliases expand to billions of nodes. No cloud-config comes near these limits.
constexpr int kMaxDepth = 100;
constexpr size_t kMaxNodes = 200000;

struct Budget {
    int depth = 0;
    size_t nodes = 0;
    bool exceeded = false;
    Position where;  // of the limit's error, which parse_tree returns
    std::string message;
};

Node convert(const YAML::Node& y, std::string_view file, Diagnostics& diags, Budget& budget);

Node convert_within(const YAML::Node& y, std::string_view file, Diagnostics& diags,
                    Budget& budget) {
    if (budget.exceeded) return {};
    if (budget.depth >= kMaxDepth || ++budget.nodes > kMaxNodes) {
        budget.exceeded = true;
        budget.where = pos_of(file, y.Mark());
        budget.message =
            budget.depth >= kMaxDepth
                ? fmt::format("nested more than {} levels deep (an alias that contains itself?)",
                              kMaxDepth)
                : fmt::format("more than {} values once aliases are expanded", kMaxNodes);
        diags.error(budget.where, budget.message);
        return {};
    }
    ++budget.depth;
    Node n = convert(y, file, diags, budget);
    --budget.depth;
    return n;
}

Node convert(const YAML::Node& y, std::string_view file, Diagnostics& diags, Budget& budget) {
    Node n;
    n.pos = pos_of(file, y.Mark());
    switch (y.Type()) {
        case YAML::NodeType::Undefined:
        case YAML::NodeType::Null:
            n.kind = Node::Kind::null;
            break;
        case YAML::NodeType::Scalar:
            n.kind = Node::Kind::scalar;
            n.scalar = y.Scalar();
            // yaml-cpp tags plain scalars "?" and quoted or block ones "!".
            n.plain = y.Tag() == "?";
            break;
        case YAML::NodeType::Sequence:
            n.kind = Node::Kind::sequence;
            for (const auto& item : y)
                n.items.push_back(convert_within(item, file, diags, budget));
            break;
        case YAML::NodeType::Map: {
            n.kind = Node::Kind::mapping;
            std::unordered_set<std::string> seen;
            for (const auto& kv : y) {
                Position kp = pos_of(file, kv.first.Mark());
                if (!kv.first.IsScalar()) {
                    diags.error(kp, "mapping keys must be plain strings");
                    continue;
                }
                const std::string& key = kv.first.Scalar();
                if (!seen.insert(key).second) {
                    diags.error(kp, fmt::format("duplicate key '{}'", key));
                    continue;
                }
                n.entries.push_back({key, kp, convert_within(kv.second, file, diags, budget)});
                // "key:" with nothing after it: point at the key, not at the next token.
                if (n.entries.back().value.is_null()) n.entries.back().value.pos = kp;
            }
            break;
        }
    }
    return n;
}

}  // namespace

const Node* Node::find(std::string_view key) const {
    if (kind != Kind::mapping) return nullptr;
    for (const auto& e : entries)
        if (e.key == key) return &e.value;
    return nullptr;
}

Node* Node::find(std::string_view key) {
    return const_cast<Node*>(static_cast<const Node*>(this)->find(key));
}

std::string_view Node::kind_name() const {
    switch (kind) {
        case Kind::null:
            return "null";
        case Kind::scalar:
            return "scalar";
        case Kind::sequence:
            return "list";
        case Kind::mapping:
            return "mapping";
    }
    return "null";
}

Result<Node> parse_tree(std::string_view text, std::string_view file, Diagnostics& diags) {
    YAML::Node y;
    try {
        y = YAML::Load(std::string(text));
    } catch (const YAML::Exception& e) {
        diags.error(pos_of(file, e.mark), e.msg);
        return fail(Errc::parse, "{}: {}", to_string(pos_of(file, e.mark)), e.msg);
    }
    Budget budget;
    Node n = convert_within(y, file, diags, budget);
    if (budget.exceeded)
        return fail(Errc::parse, "{}: {}", to_string(budget.where), budget.message);
    if (n.pos.line == 0) n.pos = {std::string(file), 1, 1};
    return n;
}

void merge_tree(Node& base, const Node& overlay) {
    if (base.is_mapping() && overlay.is_mapping()) {
        for (const auto& e : overlay.entries) {
            if (Node* existing = base.find(e.key))
                merge_tree(*existing, e.value);
            else
                base.entries.push_back(e);
        }
        return;
    }
    if (base.is_sequence() && overlay.is_sequence()) {
        base.items.insert(base.items.end(), overlay.items.begin(), overlay.items.end());
        return;
    }
    // A null overlay ("key:" with nothing) does not erase what an earlier file set.
    if (overlay.is_null() && !base.is_null()) return;
    base = overlay;
}

}  // namespace ballast::config
