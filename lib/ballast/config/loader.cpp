#include "ballast/config/loader.hpp"

#include "ballast/config/decode.hpp"

namespace ballast::config {

Loaded load_sources(std::vector<SourceFile> sources, const nlohmann::json& facts, Diagnostics diags) {
    Loaded out;
    out.diags = std::move(diags);
    DecodeContext ctx{facts, out.diags};
    Node blocks;
    for (const auto& src : sources) {
        if (src.kind == SourceKind::no_header) continue;
        auto tree = parse_tree(src.text, src.name, out.diags);
        if (!tree) continue;  // the syntax error is in diags
        decode_file(src, *tree, ctx, out.config, blocks);
        if (out.merged.is_null()) out.merged = *tree;
        else merge_tree(out.merged, *tree);
    }
    decode_blocks(blocks, ctx, out.config);
    check_config(out.config, out.diags);
    out.sources = std::move(sources);
    return out;
}

Result<Loaded> load_config(const RootPrefix& root, const SourceOptions& opts, const nlohmann::json& facts) {
    Diagnostics diags;
    auto sources = BALLAST_TRY(collect_sources(root, opts, diags));
    return load_sources(std::move(sources), facts, std::move(diags));
}

nlohmann::json tree_to_json(const Node& n, bool with_sources) {
    switch (n.kind) {
        case Node::Kind::null:
        case Node::Kind::scalar: {
            nlohmann::json v = n.is_null() ? nlohmann::json(nullptr) : nlohmann::json(n.scalar);
            if (!with_sources) return v;
            return {{"value", v}, {"source", to_string(n.pos)}};
        }
        case Node::Kind::sequence: {
            auto a = nlohmann::json::array();
            for (const auto& i : n.items) a.push_back(tree_to_json(i, with_sources));
            return a;
        }
        case Node::Kind::mapping: {
            auto o = nlohmann::json::object();
            for (const auto& e : n.entries) o[e.key] = tree_to_json(e.value, with_sources);
            return o;
        }
    }
    return nullptr;
}

}  // namespace ballast::config
