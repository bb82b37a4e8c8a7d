#include "ballast/config/diagnostics.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace ballast::config {

std::string to_string(const Position& pos) {
    if (pos.line <= 0) return pos.file;
    if (pos.col <= 0) return fmt::format("{}:{}", pos.file, pos.line);
    return fmt::format("{}:{}:{}", pos.file, pos.line, pos.col);
}

std::string Diagnostic::text() const {
    return fmt::format("{}: {}{}", to_string(pos), severity == Severity::warning ? "warning: " : "",
                       message);
}

void Diagnostics::error(Position pos, std::string message) {
    items_.push_back({Severity::error, std::move(pos), std::move(message)});
}

void Diagnostics::warning(Position pos, std::string message) {
    items_.push_back({Severity::warning, std::move(pos), std::move(message)});
}

bool Diagnostics::has_errors() const {
    return error_count() > 0;
}

size_t Diagnostics::error_count() const {
    return static_cast<size_t>(std::count_if(
        items_.begin(), items_.end(), [](const auto& d) { return d.severity == Severity::error; }));
}

std::string Diagnostics::errors_text() const {
    std::string out;
    for (const auto& d : items_) {
        if (d.severity != Severity::error) continue;
        if (!out.empty()) out += '\n';
        out += d.text();
    }
    return out;
}

}  // namespace ballast::config
