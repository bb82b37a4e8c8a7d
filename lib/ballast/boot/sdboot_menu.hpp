// systemd-boot 252's view of /EFI/Linux: which Unified Kernel Images it lists, in what order, which
// one it starts when no default is configured, and how it counts a try (boot.c in 252:
// config_entry_add_unified, config_entry_parse_tries, config_entry_compare,
// config_default_entry_select, config_entry_bump_counters). Pure: the systemd-boot backend
// (sdboot.hpp) proves with it that its file names make the loader start what the A/B state machine
// decided, after every single rename of every write.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ballast::boot::sdboot {

// The version order systemd uses for entry versions and ids (the UAPI version format: '~' older
// than anything, then '-', '^' and '.' segment prefixes, numeric segments newer than alphabetic
// ones and compared by value, any other character a separator). <0: a is older, 0: equal.
[[nodiscard]] int version_compare(std::string_view a, std::string_view b);

struct Counter {
    int left = 0;  // tries left
    int done = 0;  // tries done
    bool operator==(const Counter&) const = default;
};
// The boot counter "+LEFT[-DONE]" right before a ".efi" suffix, parsed as the loader does (the
// last '+'; decimal numbers up to INT_MAX; nothing else between it and the suffix). nullopt: the
// entry is not counted.
[[nodiscard]] std::optional<Counter> parse_counter(std::string_view file);
// What the loader renames a counted entry to before it starts it: LEFT-1 (not below 0), DONE+1.
[[nodiscard]] std::string next_name(std::string_view file, Counter c);
// The name with the counter `c` put in place of the one it has (or added before ".efi").
[[nodiscard]] std::string with_counter(std::string_view file, std::optional<Counter> c);

// What the loader reads from a UKI's .osrel section to sort it.
struct Identity {
    std::optional<std::string> sort_key;  // IMAGE_ID, else ID
    std::optional<std::string> version;   // IMAGE_VERSION, else VERSION, VERSION_ID, BUILD_ID
    bool operator==(const Identity&) const = default;
};
// nullopt: the loader does not list the image (no PRETTY_NAME, IMAGE_ID, NAME or ID). Lines as
// the loader reads them: trimmed, '#' comments, the last assignment wins, double quotes around
// the whole value stripped.
[[nodiscard]] std::optional<Identity> identity(std::string_view osrel);

// Where the loader reads a UKI's .osrel (pe.c pe_file_locate_sections in 252, an x86-64
// loader): the DOS header (64 bytes, "MZ"), the PE header at its e_lfanew (96 bytes: "PE\0\0",
// Machine x86-64, 1-96 sections, a PE32 or PE32+ optional header magic), the section table after
// the optional header, and in it the last section whose name starts with ".osrel": its file
// offset and VirtualSize. `head` is the start of the file; `need` says how much of it is needed
// when it is too short to tell.
struct OsrelAt {
    enum class Kind { not_listed, need, at } kind = Kind::not_listed;
    uint64_t offset = 0, size = 0;  // need: `size` bytes of head
};
[[nodiscard]] OsrelAt find_osrel(std::string_view head);

// Whether the loader looks at a file of /EFI/Linux at all: it ends in ".efi" (any case) and does
// not start with '.' or "auto-". It is listed when it also has an .osrel with an identity.
[[nodiscard]] bool listed_name(std::string_view file);

struct Entry {
    std::string file;  // the name in /EFI/Linux
    Identity identity;
};
// The loader's comparison: entries with no tries left last; then by sort key (entries with one
// before those without), version (newest first), then id (the lower-cased file name, newest
// first), then more tries left, fewer done. <0: a comes first.
[[nodiscard]] int menu_compare(const Entry& a, const Entry& b);
// The menu in the loader's order.
[[nodiscard]] std::vector<Entry> menu(std::vector<Entry> entries);
// The entry the loader starts with no default, no saved entry and no one-shot set (the first in
// menu order); nullopt when nothing is listed.
[[nodiscard]] std::optional<Entry> first_entry(std::vector<Entry> entries);

}  // namespace ballast::boot::sdboot
