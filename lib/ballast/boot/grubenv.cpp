#include "ballast/boot/grubenv.hpp"

namespace ballast::boot::grubenv {

Result<Vars> parse(std::string_view block) {
    if (block.size() != kSize)
        return fail(Errc::parse, "environment block is {} bytes, not {}", block.size(), kSize);
    if (block.substr(0, kHeader.size()) != kHeader)
        return fail(Errc::parse, "environment block has no '# GRUB Environment Block' header");
    Vars vars;
    size_t i = kHeader.size();
    while (i < block.size()) {
        if (block[i] == '#') {
            // Padding runs to the end; anything else after it is damage.
            for (size_t j = i; j < block.size(); ++j)
                if (block[j] != '#' && block[j] != '\n')
                    return fail(Errc::parse, "environment block: data after the padding at byte {}",
                                j);
            break;
        }
        size_t eq = block.find('=', i);
        size_t nl = block.find('\n', i);
        if (eq == std::string_view::npos || (nl != std::string_view::npos && nl < eq))
            return fail(Errc::parse, "environment block: line without '=' at byte {}", i);
        std::string key(block.substr(i, eq - i));
        if (key.empty()) return fail(Errc::parse, "environment block: empty name at byte {}", i);
        std::string value;
        size_t j = eq + 1;
        bool ended = false;
        while (j < block.size()) {
            char c = block[j];
            if (c == '\\' && j + 1 < block.size()) {
                value += block[j + 1];
                j += 2;
                continue;
            }
            if (c == '\n') {
                ended = true;
                ++j;
                break;
            }
            value += c;
            ++j;
        }
        if (!ended) return fail(Errc::parse, "environment block: unterminated value for '{}'", key);
        vars.emplace_back(std::move(key), std::move(value));
        i = j;
    }
    return vars;
}

Result<std::string> serialize(const Vars& vars) {
    std::string out(kHeader);
    for (const auto& [k, v] : vars) {
        if (k.empty() || k.find_first_of("=\n#\\ ") != std::string::npos)
            return fail(Errc::invalid_argument, "environment block: invalid name '{}'", k);
        out += k;
        out += '=';
        for (char c : v) {
            if (c == '\\' || c == '\n') out += '\\';
            out += c;
        }
        out += '\n';
    }
    if (out.size() > kSize)
        return fail(Errc::invalid_argument,
                    "environment block: {} bytes of variables do not fit in {}", out.size(), kSize);
    out.append(kSize - out.size(), '#');
    return out;
}

std::optional<std::string> get(const Vars& vars, std::string_view key) {
    for (const auto& [k, v] : vars)
        if (k == key) return v;
    return std::nullopt;
}

void set(Vars& vars, std::string_view key, std::string value) {
    for (auto& [k, v] : vars)
        if (k == key) {
            v = std::move(value);
            return;
        }
    vars.emplace_back(std::string(key), std::move(value));
}

}  // namespace ballast::boot::grubenv
