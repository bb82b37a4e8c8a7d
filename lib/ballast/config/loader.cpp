#include "ballast/config/loader.hpp"

#include "ballast/config/decode.hpp"

#include <algorithm>
#include <set>

namespace ballast::config {

Loaded load_sources(std::vector<SourceFile> sources, const nlohmann::json& facts,
                    Diagnostics diags) {
    Loaded out;
    out.diags = std::move(diags);
    Node blocks;
    for (const auto& src : sources) {
        if (src.kind == SourceKind::no_header) continue;
        // Each file on its own first: a file with errors contributes nothing, so one typo
        // cannot half-apply a file; the other files still apply.
        Diagnostics file_diags;
        DecodeContext fctx{facts, file_diags};
        Config file_cfg;
        Node file_blocks;
        auto tree = parse_tree(src.text, src.name, file_diags);
        if (tree) {
            decode_file(src, *tree, fctx, file_cfg, file_blocks);
            // The file's own blocks, for their diagnostics; the merged blocks decode below.
            Config scratch;
            decode_blocks(file_blocks, fctx, scratch);
        }
        for (const auto& d : file_diags.items())
            out.diags.add(d);
        if (file_diags.has_errors()) {
            out.skipped_files.push_back(src.name);
            if (tree && tree->find("network")) out.config.network_kept = true;
            continue;
        }
        for (auto& doc : file_cfg.network)
            out.config.network.push_back(std::move(doc));
        for (auto& [stage, steps] : file_cfg.stages) {
            auto& dst = out.config.stages[stage];
            dst.insert(dst.end(), std::make_move_iterator(steps.begin()),
                       std::make_move_iterator(steps.end()));
        }
        if (file_cfg.k3os.present || out.config.k3os.present) {
            // k3OS semantics: a later file replaces values it sets.
            auto& k = out.config.k3os;
            const auto& f = file_cfg.k3os;
            if (f.present) {
                k.present = true;
                if (!f.server_url.empty()) k.server_url = f.server_url;
                if (!f.token.empty()) k.token = f.token;
                if (!f.labels.empty()) k.labels = f.labels;
                if (!f.taints.empty()) k.taints = f.taints;
                if (!f.k3s_args.empty()) k.k3s_args = f.k3s_args;
                if (!f.environment.empty()) k.environment = f.environment;
            }
        }
        if (blocks.is_null())
            blocks = file_blocks;
        else if (!file_blocks.is_null())
            merge_tree(blocks, file_blocks);
        if (out.merged.is_null())
            out.merged = *tree;
        else
            merge_tree(out.merged, *tree);
    }
    // Merged blocks: only what comes from combining files (e.g. k3s and k3s-agent both on) is
    // new; findings about single values were reported with their file above.
    Diagnostics merged_diags;
    DecodeContext ctx{facts, merged_diags};
    decode_blocks(blocks, ctx, out.config);
    check_config(out.config, merged_diags);
    for (const auto& d : merged_diags.items()) {
        bool seen = std::any_of(out.diags.items().begin(), out.diags.items().end(),
                                [&](const Diagnostic& o) { return o.text() == d.text(); });
        if (!seen) out.diags.add(d);
    }
    out.sources = std::move(sources);
    return out;
}

Result<Loaded> load_for_block(std::vector<SourceFile> sources, std::string_view key,
                              const nlohmann::json& facts) {
    // A block is a top-level key: at the start of a line.
    const std::string at_start = fmt::format("{}:", key), on_line = "\n" + at_start;
    std::set<std::string> holders;
    for (const auto& src : sources)
        if (src.text.starts_with(at_start) || src.text.find(on_line) != std::string::npos)
            holders.insert(src.name);
    auto loaded = load_sources(std::move(sources), facts);
    if (std::ranges::any_of(loaded.diags.items(), [&](const Diagnostic& d) {
            return d.severity == Severity::error && holders.contains(d.pos.file);
        }))
        return fail(Errc::invalid_argument, "{}", loaded.diags.errors_text());
    return loaded;
}

Result<Loaded> load_config(const RootPrefix& root, const SourceOptions& opts,
                           const nlohmann::json& facts) {
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
            for (const auto& i : n.items)
                a.push_back(tree_to_json(i, with_sources));
            return a;
        }
        case Node::Kind::mapping: {
            auto o = nlohmann::json::object();
            for (const auto& e : n.entries)
                o[e.key] = tree_to_json(e.value, with_sources);
            return o;
        }
    }
    return nullptr;
}

}  // namespace ballast::config
