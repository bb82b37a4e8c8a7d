// The user and group databases of a node (/etc/passwd, /etc/group, /etc/shadow, /etc/gshadow),
// edited in place the way shadow's tools do: under the lckpwdf() lock (/etc/.pwd.lock), keeping
// every line Ballast does not touch byte for byte, with FILE- backups, atomic replacement and
// the original modes and owners. Native rather than useradd(8): one useradd costs 20-50 ms
// (docs/performance.md) and a first boot creates several users.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ballast/core/fd.hpp"
#include "ballast/core/result.hpp"
#include "ballast/core/root.hpp"

namespace ballast::accounts {

// One colon-separated line; `fields` keeps unknown trailing fields.
struct Line {
    std::vector<std::string> fields;
    [[nodiscard]] const std::string& name() const { return fields[0]; }
};

class Table {
  public:
    Table(std::string node_path, size_t nfields) : path_(std::move(node_path)), nfields_(nfields) {}
    [[nodiscard]] Status parse(std::string_view text);
    [[nodiscard]] std::string render() const;
    [[nodiscard]] Line* find(std::string_view name);
    [[nodiscard]] const Line* find(std::string_view name) const;
    void upsert(Line line);
    bool erase(std::string_view name);
    [[nodiscard]] const std::vector<Line>& lines() const { return lines_; }
    [[nodiscard]] const std::string& path() const { return path_; }
    [[nodiscard]] bool dirty() const { return dirty_; }
    void mark_dirty() { dirty_ = true; }
    [[nodiscard]] bool exists() const { return exists_; }
    void set_exists(bool e) { exists_ = e; }

  private:
    std::string path_;
    size_t nfields_;
    std::vector<Line> lines_;
    std::vector<std::string> raw_;  // lines that are comments or malformed, kept in place
    std::vector<int> order_;        // >=0: index into lines_, <0: -(index into raw_)-1
    bool dirty_ = false;
    bool exists_ = false;
};

struct LoginDefs {
    uid_t uid_min = 1000, uid_max = 60000, sys_uid_min = 100, sys_uid_max = 999;
    gid_t gid_min = 1000, gid_max = 60000, sys_gid_min = 100, sys_gid_max = 999;
    mode_t home_mode = 0700;
    std::string default_shell = "/bin/sh";
    std::string home_base = "/home";
};

// Holds the lock while alive.
class Lock {
  public:
    static Result<Lock> take(const RootPrefix& root);
    Lock(Lock&&) = default;
    Lock& operator=(Lock&&) = default;

  private:
    explicit Lock(UniqueFd fd) : fd_(std::move(fd)) {}
    UniqueFd fd_;
};

class Database {
  public:
    // Reads the four files under `root` (shadow and gshadow may be absent). With `for_update`
    // the lckpwdf() lock is held until the Database is destroyed; lookups need no lock.
    [[nodiscard]] static Result<Database> load(const RootPrefix& root, bool for_update = true);

    Table passwd{"/etc/passwd", 7}, group{"/etc/group", 4}, shadow{"/etc/shadow", 9},
        gshadow{"/etc/gshadow", 4};
    LoginDefs defs;

    [[nodiscard]] std::optional<uid_t> uid_of(std::string_view name) const;
    [[nodiscard]] std::optional<gid_t> gid_of(std::string_view name) const;
    // The primary group id in the user's passwd line.
    [[nodiscard]] std::optional<gid_t> primary_gid_of(std::string_view name) const;
    [[nodiscard]] std::optional<uid_t> free_uid(bool system) const;
    [[nodiscard]] std::optional<gid_t> free_gid(bool system,
                                                std::optional<gid_t> prefer = {}) const;
    // Adds a group (and its gshadow line). Returns its gid.
    [[nodiscard]] Result<gid_t> add_group(const std::string& name, bool system,
                                          std::optional<gid_t> gid = {});
    // Adds `user` to the member list of `group`. Returns whether it changed.
    bool add_member(const std::string& group_name, const std::string& user);

    // Writes the changed tables (backup FILE-, atomic replace, same mode and owner).
    [[nodiscard]] Status save(const RootPrefix& root);

  private:
    Database() = default;
    std::optional<Lock> lock_;
};

// crypt(3) hash of a clear-text password with the system's preferred method (yescrypt on
// Debian 12) and a salt from getrandom().
[[nodiscard]] Result<std::string> hash_password(const std::string& clear);
// True when `clear` matches `hash`.
[[nodiscard]] bool password_matches(const std::string& clear, const std::string& hash);
// Days since the epoch, for shadow's last-change field.
[[nodiscard]] long days_since_epoch();

}  // namespace ballast::accounts
