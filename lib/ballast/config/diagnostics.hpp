// Positions and findings in input files, reported as "file:line:col: message".
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ballast::config {

struct Position {
    std::string file;
    int line = 0;  // 1-based; 0 when unknown
    int col = 0;   // 1-based; 0 when unknown
};
[[nodiscard]] std::string to_string(const Position& pos);

enum class Severity { warning, error };

struct Diagnostic {
    Severity severity;
    Position pos;
    std::string message;
    // "file:line:col: message" for errors, "file:line:col: warning: message" for warnings.
    [[nodiscard]] std::string text() const;
};

class Diagnostics {
  public:
    void error(Position pos, std::string message);
    void warning(Position pos, std::string message);
    void add(Diagnostic d) { items_.push_back(std::move(d)); }

    [[nodiscard]] bool has_errors() const;
    [[nodiscard]] size_t error_count() const;
    [[nodiscard]] const std::vector<Diagnostic>& items() const { return items_; }
    // Every error as text, one per line (warnings left out).
    [[nodiscard]] std::string errors_text() const;

  private:
    std::vector<Diagnostic> items_;
};

}  // namespace ballast::config
