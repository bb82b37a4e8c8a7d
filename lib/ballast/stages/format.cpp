#include "ballast/stages/format.hpp"

#include <fmt/format.h>

namespace ballast::stages {

std::string format_report(const nlohmann::json& r, bool verbose) {
    std::string out;
    for (const auto& d : r.value("diagnostics", nlohmann::json::array())) {
        std::string pos = d.value("file", "");
        if (d.value("line", 0) > 0) pos += fmt::format(":{}", d.value("line", 0));
        if (d.value("column", 0) > 0) pos += fmt::format(":{}", d.value("column", 0));
        out +=
            fmt::format("{}: {}{}\n", pos, d.value("severity", "") == "warning" ? "warning: " : "",
                        d.value("message", ""));
    }
    for (const auto& f : r.value("skipped_files", nlohmann::json::array()))
        out += fmt::format("{}: not applied because of the errors above\n", f.get<std::string>());
    const std::string stage = r.value("stage", "");
    if (r.value("dry_run", false)) {
        out += fmt::format("{}: dry run, nothing changed; plan:\n", stage);
        for (const auto& p : r.value("plan", nlohmann::json::array()))
            out += "  " + p.get<std::string>() + "\n";
        if (r.value("plan", nlohmann::json::array()).empty()) out += "  (no steps)\n";
        return out;
    }
    for (const auto& s : r.value("steps", nlohmann::json::array())) {
        const std::string status = s.value("status", "");
        const std::string id = s.value("id", "");
        if (status == "unchanged" && !verbose) continue;
        out += fmt::format("  {:<9} {} ({:.1f} ms)\n", status, id, s.value("duration_ms", 0.0));
        for (const auto& c : s.value("changes", nlohmann::json::array()))
            out += "            " + c.get<std::string>() + "\n";
        for (const auto& e : s.value("errors", nlohmann::json::array()))
            out += "            error: " + e.get<std::string>() + "\n";
        if (!s.value("reason", "").empty()) out += "            " + s.value("reason", "") + "\n";
        if (verbose)
            for (const auto& n : s.value("notes", nlohmann::json::array()))
                out += "            " + n.get<std::string>() + "\n";
    }
    out +=
        fmt::format("{}: {} steps, {} changed, {} unchanged, {} skipped, {} failed in {:.1f} ms\n",
                    stage, r.value("steps", nlohmann::json::array()).size(), r.value("changed", 0),
                    r.value("unchanged", 0), r.value("skipped", 0), r.value("failed", 0),
                    r.value("duration_ms", 0.0));
    return out;
}

}  // namespace ballast::stages
