// config validate / show / schema: offline, no daemon needed.
#include <cstdio>

#include "ballast/config/agent_settings.hpp"
#include "ballast/config/decode.hpp"
#include "ballast/config/facts.hpp"
#include "ballast/config/loader.hpp"
#include "ballast/config/schema.hpp"
#include "ballast/core/atomic_file.hpp"
#include "ballast/core/cmdline.hpp"
#include "ballast/core/json.hpp"
#include "ctl.hpp"

namespace ballast::ctl {
namespace {

nlohmann::json diag_json(const config::Diagnostic& d, bool as_error) {
    return {{"severity", as_error                                ? "error"
                         : d.severity == config::Severity::error ? "error"
                                                                 : "warning"},
            {"file", d.pos.file},
            {"line", d.pos.line},
            {"column", d.pos.col},
            {"message", d.message}};
}

// YAML-ish listing with each value's source as a trailing comment.
void show_tree(const config::Node& n, int indent, std::string& out) {
    const std::string pad(size_t(indent) * 2, ' ');
    auto leaf = [](const config::Node& v) {
        std::string s = v.is_null() ? "null" : v.scalar;
        if (s.find('\n') != std::string::npos) s = json_text(nlohmann::json(s));
        return s + "    # " + config::to_string(v.pos);
    };
    if (n.is_mapping()) {
        for (const auto& e : n.entries) {
            if (e.value.is_mapping() || e.value.is_sequence()) {
                out += pad + e.key + ":\n";
                show_tree(e.value, indent + 1, out);
            } else {
                out += pad + e.key + ": " + leaf(e.value) + "\n";
            }
        }
    } else if (n.is_sequence()) {
        for (const auto& i : n.items) {
            if (i.is_mapping() || i.is_sequence()) {
                out += pad + "-\n";
                show_tree(i, indent + 1, out);
            } else {
                out += pad + "- " + leaf(i) + "\n";
            }
        }
    } else {
        out += pad + leaf(n) + "\n";
    }
}

}  // namespace

int cmd_config_validate(const GlobalOptions& g, const std::vector<std::string>& files,
                        bool strict) {
    std::vector<config::SourceFile> sources;
    config::Diagnostics diags;
    for (const auto& f : files) {
        auto text = read_file(f, 4u << 20);
        if (!text) {
            diags.error({f, 0, 0}, text.error().message());
            continue;
        }
        auto kind = config::detect_kind(*text, f);
        if (kind == config::SourceKind::no_header)
            diags.warning({f, 1, 1},
                          "no #cloud-config header: this file would be ignored on a node");
        sources.push_back({f, std::move(*text), kind});
    }
    auto facts = config::gather_facts(RootPrefix(g.root));
    auto loaded = config::load_sources(std::move(sources),
                                       facts ? *facts : nlohmann::json::object(), std::move(diags));
    size_t errors = 0, warnings = 0;
    auto list = nlohmann::json::array();
    for (const auto& d : loaded.diags.items()) {
        bool is_error = d.severity == config::Severity::error || strict;
        (is_error ? errors : warnings)++;
        if (g.json)
            list.push_back(diag_json(d, strict));
        else if (is_error && d.severity == config::Severity::warning)
            std::printf("%s: %s\n", config::to_string(d.pos).c_str(), d.message.c_str());
        else
            std::printf("%s\n", d.text().c_str());
    }
    if (g.json) {
        print_json({{"valid", errors == 0},
                    {"errors", errors},
                    {"warnings", warnings},
                    {"diagnostics", list}});
    } else {
        std::fprintf(stderr, "%zu file%s: %s (%zu error%s, %zu warning%s)\n", files.size(),
                     files.size() == 1 ? "" : "s", errors == 0 ? "valid" : "invalid", errors,
                     errors == 1 ? "" : "s", warnings, warnings == 1 ? "" : "s");
    }
    return errors == 0 ? kExitOk : kExitFailure;
}

int cmd_config_show(const GlobalOptions& g, const std::vector<std::string>& files) {
    RootPrefix root(std::filesystem::absolute(g.root));
    config::SourceOptions so;
    so.extra_files = files;
    if (root.is_host_root())
        if (auto cl = read_proc_cmdline()) so.cmdline = *cl;
    auto facts = config::gather_facts(root);
    auto loaded = config::load_config(root, so, facts ? *facts : nlohmann::json::object());
    if (!loaded) return report_error(loaded.error());
    if (g.json) {
        auto srcs = nlohmann::json::array();
        for (const auto& s : loaded->sources)
            srcs.push_back(
                {{"file", s.name},
                 {"used", s.kind != config::SourceKind::no_header &&
                              std::find(loaded->skipped_files.begin(), loaded->skipped_files.end(),
                                        s.name) == loaded->skipped_files.end()}});
        auto diags = nlohmann::json::array();
        for (const auto& d : loaded->diags.items())
            diags.push_back(diag_json(d, false));
        print_json({{"sources", srcs},
                    {"config", config::tree_to_json(loaded->merged, true)},
                    {"diagnostics", diags}});
        return loaded->diags.has_errors() ? kExitFailure : kExitOk;
    }
    for (const auto& d : loaded->diags.items())
        std::fprintf(stderr, "%s\n", d.text().c_str());
    std::string out = "# sources, in order:\n";
    for (const auto& s : loaded->sources)
        out += "#   " + s.name +
               (s.kind == config::SourceKind::no_header ? " (ignored: no header)" : "") + "\n";
    if (!loaded->merged.is_null()) show_tree(loaded->merged, 0, out);
    std::fputs(out.c_str(), stdout);
    return loaded->diags.has_errors() ? kExitFailure : kExitOk;
}

int cmd_config_schema(bool agent_settings) {
    const auto blocks =
        agent_settings ? config::agent_settings_blocks() : config::cloud_config_blocks();
    print_json(config::json_schema(
        blocks, agent_settings ? "https://ballast.invalid/schema/agent.json"
                               : "https://ballast.invalid/schema/cloud-config.json"));
    return kExitOk;
}

}  // namespace ballast::ctl
