#include "ballast/system/accounts.hpp"

#include <crypt.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <set>
#include <thread>

#include "ballast/core/files.hpp"
#include "ballast/core/secret.hpp"
#include "ballast/core/text.hpp"

namespace ballast::accounts {
namespace {

std::vector<std::string> split(std::string_view s, char sep) {
    std::vector<std::string> out;
    size_t i = 0;
    for (;;) {
        size_t j = s.find(sep, i);
        out.emplace_back(s.substr(i, j == std::string_view::npos ? std::string_view::npos : j - i));
        if (j == std::string_view::npos) break;
        i = j + 1;
    }
    return out;
}

std::optional<uint32_t> number(std::string_view s) {
    return parse_unsigned<uint32_t>(s);
}

void parse_login_defs(std::string_view text, LoginDefs& d) {
    for (auto& line : split(text, '\n')) {
        auto b = line.find_first_not_of(" \t");
        if (b == std::string::npos || line[b] == '#') continue;
        auto e = line.find_first_of(" \t", b);
        if (e == std::string::npos) continue;
        std::string key = line.substr(b, e - b);
        auto vb = line.find_first_not_of(" \t", e);
        if (vb == std::string::npos) continue;
        std::string val = line.substr(vb, line.find_last_not_of(" \t\r") - vb + 1);
        auto n = number(val);
        if (key == "HOME_MODE" || key == "UMASK") {
            unsigned long m = std::strtoul(val.c_str(), nullptr, 8);
            if (key == "HOME_MODE")
                d.home_mode = mode_t(m & 07777);
            else
                d.home_mode = mode_t(0777 & ~m);  // used only when HOME_MODE is absent
            continue;
        }
        if (!n) continue;
        if (key == "UID_MIN")
            d.uid_min = uid_t(*n);
        else if (key == "UID_MAX")
            d.uid_max = uid_t(*n);
        else if (key == "SYS_UID_MIN")
            d.sys_uid_min = uid_t(*n);
        else if (key == "SYS_UID_MAX")
            d.sys_uid_max = uid_t(*n);
        else if (key == "GID_MIN")
            d.gid_min = gid_t(*n);
        else if (key == "GID_MAX")
            d.gid_max = gid_t(*n);
        else if (key == "SYS_GID_MIN")
            d.sys_gid_min = gid_t(*n);
        else if (key == "SYS_GID_MAX")
            d.sys_gid_max = gid_t(*n);
    }
}

}  // namespace

Status Table::parse(std::string_view text) {
    lines_.clear();
    raw_.clear();
    order_.clear();
    auto all = split(text, '\n');
    if (!all.empty() && all.back().empty()) all.pop_back();
    for (auto& l : all) {
        auto f = split(l, ':');
        if (l.empty() || l.front() == '#' || l.front() == '+' || l.front() == '-' ||
            f.size() < nfields_ || f[0].empty()) {
            raw_.push_back(l);
            order_.push_back(-int(raw_.size()));
            continue;
        }
        lines_.push_back({std::move(f)});
        order_.push_back(int(lines_.size()) - 1);
    }
    return {};
}

std::string Table::render() const {
    std::string out;
    for (int o : order_) {
        if (o < 0) {
            out += raw_[size_t(-o - 1)];
        } else {
            const auto& f = lines_[size_t(o)].fields;
            for (size_t i = 0; i < f.size(); ++i)
                out += (i ? ":" : "") + f[i];
        }
        out += '\n';
    }
    return out;
}

Line* Table::find(std::string_view name) {
    for (size_t i = 0; i < order_.size(); ++i)
        if (order_[i] >= 0 && lines_[size_t(order_[i])].name() == name)
            return &lines_[size_t(order_[i])];
    return nullptr;
}

const Line* Table::find(std::string_view name) const {
    return const_cast<Table*>(this)->find(name);
}

void Table::upsert(Line line) {
    line.fields.resize(std::max(line.fields.size(), nfields_));
    if (Line* l = find(line.name())) {
        if (l->fields != line.fields) {
            *l = std::move(line);
            dirty_ = true;
        }
        return;
    }
    lines_.push_back(std::move(line));
    order_.push_back(int(lines_.size()) - 1);
    dirty_ = true;
}

bool Table::erase(std::string_view name) {
    for (size_t i = 0; i < order_.size(); ++i)
        if (order_[i] >= 0 && lines_[size_t(order_[i])].name() == name) {
            order_.erase(order_.begin() + long(i));
            dirty_ = true;
            return true;
        }
    return false;
}

Result<Lock> Lock::take(const RootPrefix& root) {
    auto fd = BALLAST_TRY(root.open_beneath("/etc/.pwd.lock", O_WRONLY | O_CREAT, 0600));
    // lckpwdf() semantics: a POSIX record lock on the whole file, waiting up to 15 s. OFD locks
    // conflict with POSIX ones, so shadow's tools and Ballast exclude each other.
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    for (int i = 0; i < 150; ++i) {
        if (::fcntl(fd.get(), F_OFD_SETLK, &fl) == 0) return Lock(std::move(fd));
        if (errno != EAGAIN && errno != EACCES) return fail_errno(errno, "lock /etc/.pwd.lock");
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return fail(Errc::busy, "/etc/.pwd.lock: held by another program for 15 s");
}

Result<Database> Database::load(const RootPrefix& root, bool for_update) {
    Database db;
    if (for_update) db.lock_.emplace(BALLAST_TRY(Lock::take(root)));
    for (Table* t : {&db.passwd, &db.group, &db.shadow, &db.gshadow}) {
        auto text = BALLAST_TRY_CTX(read_beneath(root, t->path(), 64u << 20), "read {}", t->path());
        t->set_exists(text.has_value());
        BALLAST_TRY(t->parse(text.value_or("")));
    }
    if (auto defs = read_beneath(root, "/etc/login.defs"); defs && *defs)
        parse_login_defs(**defs, db.defs);
    if (auto ua = read_beneath(root, "/etc/default/useradd"); ua && *ua) {
        for (auto& line : split(**ua, '\n')) {
            if (line.rfind("SHELL=", 0) == 0 && line.size() > 6)
                db.defs.default_shell = line.substr(6);
            if (line.rfind("HOME=", 0) == 0 && line.size() > 5) db.defs.home_base = line.substr(5);
        }
    }
    return db;
}

std::optional<uid_t> Database::uid_of(std::string_view name) const {
    const Line* l = passwd.find(name);
    if (!l) return std::nullopt;
    auto n = number(l->fields[2]);
    return n ? std::optional<uid_t>(uid_t(*n)) : std::nullopt;
}

std::optional<gid_t> Database::primary_gid_of(std::string_view name) const {
    const Line* l = passwd.find(name);
    if (!l) return std::nullopt;
    auto n = number(l->fields[3]);
    return n ? std::optional<gid_t>(gid_t(*n)) : std::nullopt;
}

std::optional<gid_t> Database::gid_of(std::string_view name) const {
    const Line* l = group.find(name);
    if (!l) return std::nullopt;
    auto n = number(l->fields[2]);
    return n ? std::optional<gid_t>(gid_t(*n)) : std::nullopt;
}

std::optional<uid_t> Database::free_uid(bool system) const {
    std::set<unsigned long> used;
    for (const auto& l : passwd.lines())
        if (auto n = number(l.fields[2])) used.insert(*n);
    if (system) {
        for (uid_t u = defs.sys_uid_max; u >= defs.sys_uid_min && u > 0; --u)
            if (!used.count(u)) return u;
        return std::nullopt;
    }
    for (uid_t u = defs.uid_min; u <= defs.uid_max; ++u)
        if (!used.count(u)) return u;
    return std::nullopt;
}

std::optional<gid_t> Database::free_gid(bool system, std::optional<gid_t> prefer) const {
    std::set<unsigned long> used;
    for (const auto& l : group.lines())
        if (auto n = number(l.fields[2])) used.insert(*n);
    if (prefer && !used.count(*prefer)) return prefer;
    if (system) {
        for (gid_t g = defs.sys_gid_max; g >= defs.sys_gid_min && g > 0; --g)
            if (!used.count(g)) return g;
        return std::nullopt;
    }
    for (gid_t g = defs.gid_min; g <= defs.gid_max; ++g)
        if (!used.count(g)) return g;
    return std::nullopt;
}

Result<gid_t> Database::add_group(const std::string& name, bool system, std::optional<gid_t> gid) {
    if (auto existing = gid_of(name)) return *existing;
    auto g = free_gid(system, gid);
    if (!g) return fail(Errc::exists, "group {}: no free group id", name);
    group.upsert({{name, "x", std::to_string(*g), ""}});
    if (gshadow.exists()) gshadow.upsert({{name, "!", "", ""}});
    return *g;
}

bool Database::add_member(const std::string& group_name, const std::string& user) {
    bool changed = false;
    for (Table* t : {&group, &gshadow}) {
        Line* l = t->find(group_name);
        if (!l) continue;
        std::string& members = l->fields[3];
        auto list = members.empty() ? std::vector<std::string>{} : split(members, ',');
        if (std::find(list.begin(), list.end(), user) != list.end()) continue;
        members += (members.empty() ? "" : ",") + user;
        t->mark_dirty();
        changed = true;
    }
    return changed;
}

Status Database::save(const RootPrefix& root) {
    if (!lock_) return fail(Errc::failed, "accounts: saving a database loaded without the lock");
    for (Table* t : {&passwd, &group, &shadow, &gshadow}) {
        if (!t->dirty()) continue;
        auto st = BALLAST_TRY(stat_beneath(root, t->path()));
        mode_t mode = st ? (st->st_mode & 07777) : (t == &shadow || t == &gshadow ? 0640 : 0644);
        Ownership own;
        if (st) own = {st->st_uid, st->st_gid};
        // FILE- backup of the previous version, as shadow's tools keep one.
        if (auto old = BALLAST_TRY(read_beneath(root, t->path())))
            BALLAST_TRY(write_beneath(root, t->path() + "-", *old, mode, own));
        BALLAST_TRY(write_beneath(root, t->path(), t->render(), mode, own));
    }
    return {};
}

Result<std::string> hash_password(const std::string& clear) {
    uint8_t rnd[32];
    BALLAST_TRY(fill_random(rnd));
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    if (!crypt_gensalt_rn(nullptr, 0, reinterpret_cast<const char*>(rnd), sizeof rnd, salt,
                          sizeof salt))
        return fail_errno(errno, "crypt_gensalt");
    crypt_data data{};
    const char* h = crypt_rn(clear.c_str(), salt, &data, sizeof data);
    if (!h || h[0] == '*') return fail(Errc::failed, "crypt: cannot hash the password");
    std::string out(h);
    ::explicit_bzero(&data, sizeof data);
    return out;
}

bool password_matches(const std::string& clear, const std::string& hash) {
    if (hash.empty() || hash[0] != '$') return false;
    crypt_data data{};
    const char* h = crypt_rn(clear.c_str(), hash.c_str(), &data, sizeof data);
    bool ok = h && h[0] != '*' && hash == h;
    ::explicit_bzero(&data, sizeof data);
    return ok;
}

long days_since_epoch() {
    using namespace std::chrono;
    return long(duration_cast<hours>(system_clock::now().time_since_epoch()).count() / 24);
}

}  // namespace ballast::accounts
