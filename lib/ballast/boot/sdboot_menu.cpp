#include "ballast/boot/sdboot_menu.hpp"

#include <algorithm>
#include <climits>

#include <fmt/format.h>

#include "ballast/core/bytes.hpp"
#include "ballast/core/text.hpp"

namespace ballast::boot::sdboot {
namespace {

constexpr std::string_view kSuffix = ".efi";

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}
bool is_alpha(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_prefix(char c) {
    return c == '~' || c == '-' || c == '^' || c == '.';
}

int sign(long v) {
    return (v > 0) - (v < 0);
}

// A C string's view of `s`: the loader's strings end at the first NUL.
std::string_view c_string(std::string_view s) {
    return s.substr(0, s.find('\0'));
}

bool ends_with_no_case(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && ascii_lower(s.substr(s.size() - suffix.size())) == suffix;
}

// Decimal digits at `s[i]`, at least one, not above INT_MAX; advances `i` past them.
std::optional<int> number_at(std::string_view s, size_t& i) {
    const size_t start = i;
    long long v = 0;
    while (i < s.size() && is_digit(s[i])) {
        v = v * 10 + (s[i] - '0');
        if (v > INT_MAX) return std::nullopt;
        ++i;
    }
    if (i == start) return std::nullopt;
    return int(v);
}

}  // namespace

int version_compare(std::string_view a, std::string_view b) {
    a = c_string(a);
    b = c_string(b);
    size_t i = 0, j = 0;
    auto at = [](std::string_view s, size_t k) { return k < s.size() ? s[k] : '\0'; };
    for (;;) {
        while (i < a.size() && !is_digit(a[i]) && !is_alpha(a[i]) && !is_prefix(a[i]))
            ++i;
        while (j < b.size() && !is_digit(b[j]) && !is_alpha(b[j]) && !is_prefix(b[j]))
            ++j;
        // '~' (a pre-release) is older than anything, the end of the string included.
        if (at(a, i) == '~' || at(b, j) == '~') {
            if ((at(a, i) == '~') != (at(b, j) == '~')) return at(a, i) == '~' ? -1 : 1;
            ++i, ++j;
        }
        // Then the string with fewer segments is older.
        if (i >= a.size() || j >= b.size()) return sign(long(i < a.size()) - long(j < b.size()));
        // A segment prefixed by '-', then '^', then '.' is older than one without; each checked
        // in turn, so '-' < '^' < '.' < none.
        for (char p : {'-', '^', '.'}) {
            if (at(a, i) != p && at(b, j) != p) continue;
            if ((at(a, i) == p) != (at(b, j) == p)) return at(a, i) == p ? -1 : 1;
            ++i, ++j;
        }
        size_t ia = i, jb = j;
        if (is_digit(at(a, i)) || is_digit(at(b, j))) {
            // Numeric segments are newer than none (an alphabetic one), and compare by value.
            while (is_digit(at(a, ia)))
                ++ia;
            while (is_digit(at(b, jb)))
                ++jb;
            if ((ia > i) != (jb > j)) return ia > i ? 1 : -1;
            while (at(a, i) == '0')
                ++i;
            while (at(b, j) == '0')
                ++j;
            if (ia - i != jb - j) return ia - i > jb - j ? 1 : -1;
            if (int r = a.substr(i, ia - i).compare(b.substr(j, jb - j)); r != 0) return sign(r);
        } else {
            while (is_alpha(at(a, ia)))
                ++ia;
            while (is_alpha(at(b, jb)))
                ++jb;
            const size_t n = std::min(ia - i, jb - j);
            if (int r = a.substr(i, n).compare(b.substr(j, n)); r != 0) return sign(r);
            if (ia - i != jb - j) return ia - i > jb - j ? 1 : -1;
        }
        i = ia;
        j = jb;
    }
}

std::optional<Counter> parse_counter(std::string_view file) {
    const size_t plus = file.rfind('+');
    if (plus == std::string_view::npos) return std::nullopt;
    size_t i = plus + 1;
    Counter c;
    auto left = number_at(file, i);
    if (!left) return std::nullopt;
    c.left = *left;
    if (i < file.size() && file[i] == '-') {
        ++i;
        auto done = number_at(file, i);
        if (!done) return std::nullopt;
        c.done = *done;
    }
    // The loader compares the rest with its suffix exactly (case and all).
    if (file.substr(i) != kSuffix) return std::nullopt;
    return c;
}

std::string with_counter(std::string_view file, std::optional<Counter> c) {
    std::string_view stem = file;
    if (parse_counter(file))
        stem = file.substr(0, file.rfind('+'));
    else if (ends_with_no_case(file, kSuffix))
        stem = file.substr(0, file.size() - kSuffix.size());
    if (!c) return fmt::format("{}{}", stem, kSuffix);
    return fmt::format("{}+{}-{}{}", stem, c->left, c->done, kSuffix);
}

std::string next_name(std::string_view file, Counter c) {
    return with_counter(file,
                        Counter{std::max(c.left - 1, 0), c.done == INT_MAX ? c.done : c.done + 1});
}

std::optional<Identity> identity(std::string_view osrel) {
    osrel = c_string(osrel);
    std::optional<std::string> pretty, image_id, name, id, image_version, version, version_id,
        build_id;
    size_t pos = 0;
    while (pos < osrel.size()) {
        size_t end = osrel.find_first_of("\r\n", pos);
        if (end == std::string_view::npos) end = osrel.size();
        std::string_view line = osrel.substr(pos, end - pos);
        pos = end + 1;
        while (!line.empty() && (line.front() == ' ' || line.front() == '\t'))
            line.remove_prefix(1);
        while (!line.empty() && (line.back() == ' ' || line.back() == '\t'))
            line.remove_suffix(1);
        if (line.empty() || line.front() == '#') continue;
        const size_t eq = line.find('=');
        if (eq == std::string_view::npos) continue;
        std::string_view key = line.substr(0, eq), value = line.substr(eq);
        while (!value.empty() && value.front() == '=')
            value.remove_prefix(1);
        // A lone `"` is both the opening and the closing quote, as in the loader.
        if (!value.empty() && value.front() == '"' && value.back() == '"')
            value = value.size() >= 2 ? value.substr(1, value.size() - 2) : std::string_view{};
        auto set = [&](std::optional<std::string>& field) { field = std::string(value); };
        if (key == "PRETTY_NAME")
            set(pretty);
        else if (key == "IMAGE_ID")
            set(image_id);
        else if (key == "NAME")
            set(name);
        else if (key == "ID")
            set(id);
        else if (key == "IMAGE_VERSION")
            set(image_version);
        else if (key == "VERSION")
            set(version);
        else if (key == "VERSION_ID")
            set(version_id);
        else if (key == "BUILD_ID")
            set(build_id);
    }
    if (!pretty && !image_id && !name && !id) return std::nullopt;
    Identity out;
    out.sort_key = image_id ? image_id : id;
    out.version = image_version ? image_version
                  : version     ? version
                  : version_id  ? version_id
                                : build_id;
    return out;
}

OsrelAt find_osrel(std::string_view head) {
    constexpr size_t kDos = 64, kPe = 96, kSection = 40, kMaxSections = 96;
    auto need = [](uint64_t n) { return OsrelAt{OsrelAt::Kind::need, 0, n}; };
    if (head.size() < kDos) return need(kDos);
    if (head.substr(0, 2) != "MZ") return {};
    const uint64_t pe = le32(head, 0x3c);
    if (head.size() < pe + kPe) return need(pe + kPe);
    const uint16_t sections = le16(head, pe + 6), magic = le16(head, pe + 24);
    if (head.substr(pe, 4) != std::string_view("PE\0\0", 4) || le16(head, pe + 4) != 0x8664 ||
        sections == 0 || sections > kMaxSections || (magic != 0x10b && magic != 0x20b))
        return {};
    const uint64_t table = pe + 24 + le16(head, pe + 20);
    if (head.size() < table + sections * kSection) return need(table + sections * kSection);
    OsrelAt out;
    for (size_t i = 0; i < sections; ++i) {
        const size_t at = table + i * kSection;
        if (head.substr(at, 6) != ".osrel") continue;
        out = {OsrelAt::Kind::at, le32(head, at + 20), le32(head, at + 8)};
    }
    if (out.size == 0) return {};
    return out;
}

bool listed_name(std::string_view file) {
    return !file.empty() && file.front() != '.' && !file.starts_with("auto-") &&
           ends_with_no_case(file, kSuffix);
}

int menu_compare(const Entry& a, const Entry& b) {
    const auto ca = parse_counter(a.file), cb = parse_counter(b.file);
    const bool spent_a = ca && ca->left == 0, spent_b = cb && cb->left == 0;
    if (spent_a != spent_b) return spent_a ? 1 : -1;
    const auto &ka = a.identity.sort_key, &kb = b.identity.sort_key;
    if (ka.has_value() != kb.has_value()) return ka ? -1 : 1;
    if (ka) {
        if (int r = c_string(*ka).compare(c_string(*kb)); r != 0) return sign(r);
        if (int r =
                version_compare(a.identity.version.value_or(""), b.identity.version.value_or(""));
            r != 0)
            return -r;
    }
    if (int r = version_compare(ascii_lower(a.file), ascii_lower(b.file)); r != 0) return -r;
    if (!ca || !cb) return 0;
    if (ca->left != cb->left) return ca->left > cb->left ? -1 : 1;
    return sign(long(ca->done) - long(cb->done));
}

std::vector<Entry> menu(std::vector<Entry> entries) {
    std::stable_sort(entries.begin(), entries.end(),
                     [](const Entry& a, const Entry& b) { return menu_compare(a, b) < 0; });
    return entries;
}

std::optional<Entry> first_entry(std::vector<Entry> entries) {
    auto m = menu(std::move(entries));
    if (m.empty()) return std::nullopt;
    return m.front();
}

}  // namespace ballast::boot::sdboot
