#include "ballast/core/cmdline.hpp"

#include <cctype>

#include "ballast/core/atomic_file.hpp"

namespace ballast {

std::vector<CmdlineWord> parse_cmdline(std::string_view text) {
    std::vector<CmdlineWord> out;
    size_t i = 0;
    while (i < text.size()) {
        while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i])))
            ++i;
        if (i >= text.size()) break;
        std::string word;
        bool quoted = false;
        while (i < text.size() && (quoted || !std::isspace(static_cast<unsigned char>(text[i])))) {
            if (text[i] == '"')
                quoted = !quoted;
            else
                word += text[i];
            ++i;
        }
        auto eq = word.find('=');
        if (eq == std::string::npos)
            out.push_back({word, std::nullopt});
        else
            out.push_back({word.substr(0, eq), word.substr(eq + 1)});
    }
    return out;
}

std::optional<std::string> cmdline_value(std::string_view text, std::string_view key) {
    std::optional<std::string> v;
    for (auto& w : parse_cmdline(text))
        if (w.key == key && w.value) v = std::move(w.value);
    return v;
}

Result<std::string> read_proc_cmdline() {
    return read_file("/proc/cmdline", 1u << 16);
}

}  // namespace ballast
