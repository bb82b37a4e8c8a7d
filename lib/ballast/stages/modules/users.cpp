// users, authorized_keys (ssh) and entities: the node's account databases, edited natively
// (system/accounts), homes from /etc/skel, authorized_keys appended once per key.
#include <sys/stat.h>

#include <algorithm>
#include <set>

#include "ballast/core/files.hpp"
#include "ballast/core/text.hpp"
#include "ballast/stages/modules.hpp"
#include "ballast/system/accounts.hpp"

namespace ballast::stages::modules {
namespace {

using accounts::Database;

struct Account {
    std::string name, home;
    uid_t uid;
    gid_t gid;
};

std::optional<Account> account_of(const Database& db, const std::string& name) {
    const auto* l = db.passwd.find(name);
    auto uid = db.uid_of(name);
    auto gid = db.primary_gid_of(name);
    if (!l || !uid || !gid) return std::nullopt;
    return Account{name, l->fields[5], *uid, *gid};
}

// Copies /etc/skel into a new home (files and folders, modes kept, owned by the user).
Status copy_skel(const RootPrefix& root, const std::string& from, const std::string& to, uid_t uid,
                 gid_t gid) {
    auto host = BALLAST_TRY(root.resolve(from));
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(host, ec)) {
        std::string name = e.path().filename();
        auto st = BALLAST_TRY(stat_beneath(root, from + "/" + name));
        if (!st) continue;
        if (S_ISDIR(st->st_mode)) {
            BALLAST_TRY(mkdirs_beneath(root, to + "/" + name, st->st_mode & 07777, {uid, gid}));
            BALLAST_TRY(copy_skel(root, from + "/" + name, to + "/" + name, uid, gid));
        } else if (S_ISREG(st->st_mode)) {
            auto data = BALLAST_TRY(read_beneath(root, from + "/" + name));
            BALLAST_TRY(write_beneath(root, to + "/" + name, data.value_or(""), st->st_mode & 07777,
                                      {uid, gid}));
        }
    }
    return {};
}

Result<bool> ensure_home(const RootPrefix& root, const Account& a, mode_t mode) {
    auto st = BALLAST_TRY(stat_beneath(root, a.home));
    if (st) return false;
    auto [parent, base] = split_node_path(a.home);
    BALLAST_TRY(mkdirs_beneath(root, parent, 0755));
    BALLAST_TRY(mkdirs_beneath(root, a.home, mode, {a.uid, a.gid}));
    if (auto skel = BALLAST_TRY(stat_beneath(root, "/etc/skel")); skel && S_ISDIR(skel->st_mode))
        BALLAST_TRY(copy_skel(root, "/etc/skel", a.home, a.uid, a.gid));
    return true;
}

// Keys behind github:USER, gitlab:USER or a URL.
Result<std::vector<std::string>> fetch_keys(const std::string& ref, const StageContext& ctx) {
    std::string url = ref;
    if (ref.rfind("github:", 0) == 0)
        url = "https://github.com/" + ref.substr(7) + ".keys";
    else if (ref.rfind("gitlab:", 0) == 0)
        url = "https://gitlab.com/" + ref.substr(7) + ".keys";
    auto body = http::get_string(url, ctx.http);
    if (!body)
        return std::unexpected(
            std::move(body.error())
                .context(fmt::format("cannot fetch keys for {} (is the network up?)", ref)));
    std::vector<std::string> keys;
    size_t i = 0;
    while (i < body->size()) {
        size_t j = body->find('\n', i);
        if (j == std::string::npos) j = body->size();
        std::string k = body->substr(i, j - i);
        while (!k.empty() && (k.back() == '\r' || k.back() == ' '))
            k.pop_back();
        if (!k.empty() && k[0] != '#') keys.push_back(k);
        i = j + 1;
    }
    if (keys.empty()) return fail(Errc::not_found, "{}: no keys at {}", ref, url);
    return keys;
}

// Adds keys missing from ~/.ssh/authorized_keys; returns whether anything changed.
Result<bool> add_keys(const RootPrefix& root, const Account& a,
                      const std::vector<std::string>& keys) {
    if (keys.empty()) return false;
    const std::string dir = a.home + "/.ssh", file = dir + "/authorized_keys";
    bool changed = false;
    auto dst = BALLAST_TRY(stat_beneath(root, dir));
    if (!dst) {
        BALLAST_TRY(mkdirs_beneath(root, dir, 0700, {a.uid, a.gid}));
        changed = true;
    }
    auto cur = BALLAST_TRY(read_beneath(root, file));
    std::string content = cur.value_or("");
    std::set<std::string> have;
    size_t i = 0;
    while (i < content.size()) {
        size_t j = content.find('\n', i);
        if (j == std::string::npos) j = content.size();
        have.insert(content.substr(i, j - i));
        i = j + 1;
    }
    for (const auto& k : keys) {
        if (have.count(k)) continue;
        if (!content.empty() && content.back() != '\n') content += '\n';
        content += k + "\n";
        have.insert(k);
    }
    return BALLAST_TRY(ensure_file(root, file, content, 0600, a.uid, a.gid)) || changed;
}

std::string shadow_hash(const config::UserSpec& u, const std::string& current, ModuleResult& r) {
    std::string base = current;
    bool locked = !base.empty() && base[0] == '!';
    if (locked) base = base.substr(1);
    std::string want = current;
    if (u.passwd) {
        const std::string& p = *u.passwd;
        if (p.empty() || p[0] == '$' || p == "*" || p == "!")
            want = p;
        else if (accounts::password_matches(p, base))
            want = base;
        else if (auto h = accounts::hash_password(p))
            want = *h;
        else
            r.error("user " + u.name + ": " + h.error().what());
        locked = false;
    }
    if (u.lock_passwd) locked = true;
    if (locked && (want.empty() || want[0] != '!')) want = "!" + want;
    if (!locked && !want.empty() && want[0] == '!' && u.passwd) want = want.substr(1);
    return want.empty() ? "!" : want;
}

// Creates or updates one user in `db` (not yet saved). Returns false on an error.
// The user's uid: the one asked for (free, and unchanged for an existing user), the existing
// one, or the next free one for a new user.
Result<uid_t> pick_uid(Database& db, const config::UserSpec& u, const accounts::Line* pw) {
    if (u.uid) {
        auto id = parse_unsigned<uint32_t>(*u.uid);
        if (!id)  // the decoder refuses these; a plan built by hand may not
            return fail(Errc::invalid_argument, "user {}: '{}' is not a user id", u.name, *u.uid);
        for (const auto& l : db.passwd.lines())
            if (l.name() != u.name && parse_unsigned<uint32_t>(l.fields[2]) == id)
                return fail(Errc::exists, "user {}: uid {} is taken by {}", u.name, *id, l.name());
        if (pw && db.uid_of(u.name) != *id)
            return fail(Errc::unsupported,
                        "user {}: changing the uid of an existing user ({} -> {}) is not supported",
                        u.name, pw->fields[2], *u.uid);
        return uid_t(*id);
    }
    if (!pw) {
        auto free = db.free_uid(u.system);
        if (!free) return fail(Errc::failed, "user {}: no free user id", u.name);
        return *free;
    }
    if (auto id = db.uid_of(u.name)) return *id;
    return fail(Errc::parse, "user {}: /etc/passwd has a bad uid '{}'", u.name, pw->fields[2]);
}

// The primary group: the one asked for, a new one named after a new user, or the existing one.
Result<gid_t> pick_gid(Database& db, const config::UserSpec& u, const accounts::Line* pw,
                       uid_t uid) {
    if (u.primary_group || !pw) {
        auto g = u.primary_group ? db.add_group(*u.primary_group, u.system)
                                 : db.add_group(u.name, u.system, gid_t(uid));
        if (!g) return fail(Errc::failed, "user {}: {}", u.name, g.error().what());
        return *g;
    }
    if (auto id = db.primary_gid_of(u.name)) return *id;
    return fail(Errc::parse, "user {}: /etc/passwd has a bad gid '{}'", u.name, pw->fields[3]);
}

// The shadow entry (where the node has /etc/shadow, or the user has none yet): the password as
// asked, its change date when it changes.
void set_shadow(Database& db, const config::UserSpec& u, ModuleResult& r) {
    const auto* sh = db.shadow.find(u.name);
    if (!db.shadow.exists() && sh) return;
    std::vector<std::string> sf =
        sh ? sh->fields
           : std::vector<std::string>{u.name, "!",     std::to_string(accounts::days_since_epoch()),
                                      "0",    "99999", "7",
                                      "",     "",      ""};
    std::string want = shadow_hash(u, sf[1], r);
    if (want != sf[1]) {
        sf[1] = want;
        if (sh) sf[2] = std::to_string(accounts::days_since_epoch());
    }
    db.shadow.upsert({sf});
}

// The supplementary groups, made when missing.
void join_groups(Database& db, const config::UserSpec& u, ModuleResult& r) {
    for (const auto& g : u.groups) {
        if (!db.gid_of(g)) {
            if (auto made = db.add_group(g, false); !made) {
                r.error("user " + u.name + ": group " + g + ": " + made.error().what());
                continue;
            }
        }
        db.add_member(g, u.name);
    }
}

bool apply_user(Database& db, const config::UserSpec& u, ModuleResult& r) {
    auto* pw = db.passwd.find(u.name);
    const bool create = pw == nullptr;
    auto uid = pick_uid(db, u, pw);
    if (!uid) {
        r.error(uid.error().what());
        return false;
    }
    auto gid = pick_gid(db, u, pw, *uid);
    if (!gid) {
        r.error(gid.error().what());
        return false;
    }
    std::vector<std::string> fields =
        create ? std::vector<std::string>{u.name,
                                          "x",
                                          "",
                                          "",
                                          "",
                                          db.defs.home_base + "/" + u.name,
                                          db.defs.default_shell}
               : pw->fields;
    fields[2] = std::to_string(*uid);
    fields[3] = std::to_string(*gid);
    if (u.gecos) fields[4] = *u.gecos;
    if (u.homedir) fields[5] = *u.homedir;
    if (u.shell) fields[6] = *u.shell;
    db.passwd.upsert({fields});
    set_shadow(db, u, r);
    join_groups(db, u, r);
    return true;
}

}  // namespace

void users(const config::Step& s, StageContext& ctx, ModuleResult& r) {
    if (s.users.empty()) return;
    auto db = Database::load(ctx.root, true);
    if (!db) {
        r.error(db.error().what());
        return;
    }
    std::vector<const config::UserSpec*> applied;
    std::vector<std::string> changes;
    auto render_all = [&] {
        return db->passwd.render() + db->group.render() + db->shadow.render() +
               db->gshadow.render();
    };
    for (const auto& u : s.users) {
        const bool existed = db->passwd.find(u.name) != nullptr;
        const std::string before = render_all();
        if (!apply_user(*db, u, r)) continue;
        applied.push_back(&u);
        if (render_all() != before)
            changes.push_back((existed ? "updated user " : "created user ") + u.name);
    }
    if (!changes.empty()) {
        if (!r.check(db->save(ctx.root))) return;
        for (auto& c : changes)
            r.change(std::move(c));
    }
    for (const auto* u : applied) {
        auto a = account_of(*db, u->name);
        if (!a) continue;
        if (!u->no_create_home) {
            auto home = ensure_home(ctx.root, *a, db->defs.home_mode);
            if (!home)
                r.error("user " + u->name + ": home " + a->home + ": " + home.error().what());
            else if (*home)
                r.change("created " + a->home);
        }
        std::vector<std::string> local;
        for (const auto& k : u->ssh_authorized_keys)
            if (!config::is_remote_key(k))
                local.push_back(k);
            else
                r.error(
                    fmt::format("user {}: remote key {} belongs in the network stage", u->name, k));
        auto keys = add_keys(ctx.root, *a, local);
        if (!keys)
            r.error("user " + u->name + ": " + keys.error().what());
        else if (*keys)
            r.change("updated ssh keys of " + u->name);
    }
}

void authorized_keys(const config::Step& s, StageContext& ctx, ModuleResult& r) {
    if (s.authorized_keys.empty()) return;
    auto db = Database::load(ctx.root, false);
    if (!db) {
        r.error(db.error().what());
        return;
    }
    for (const auto& [user, refs] : s.authorized_keys) {
        auto a = account_of(*db, user);
        if (!a) {
            r.error(fmt::format("authorized_keys: no user '{}' on the node", user));
            continue;
        }
        std::vector<std::string> keys;
        for (const auto& k : refs) {
            if (!config::is_remote_key(k)) {
                keys.push_back(k);
                continue;
            }
            auto fetched = fetch_keys(k, ctx);
            if (!fetched)
                r.error(fetched.error().what());
            else
                keys.insert(keys.end(), fetched->begin(), fetched->end());
        }
        auto changed = add_keys(ctx.root, *a, keys);
        if (!changed)
            r.error("authorized_keys of " + user + ": " + changed.error().what());
        else if (*changed)
            r.change("updated ssh keys of " + user);
    }
}

namespace {

// One entity document to its database line (mudler/entities field names).
Result<std::pair<accounts::Table* (*)(Database&), accounts::Line>> entity_line(
    const config::Node& e) {
    auto get = [&](const char* k) -> std::string {
        const config::Node* n = e.find(k);
        return n && n->is_scalar() ? n->scalar : "";
    };
    std::string kind = get("kind");
    if (kind == "user") {
        if (get("username").empty())
            return fail(Errc::invalid_argument, "user entity: username is required");
        return std::pair{
            +[](Database& d) { return &d.passwd; },
            accounts::Line{{get("username"), get("password").empty() ? "x" : get("password"),
                            get("uid"), get("gid"), get("info"), get("homedir"), get("shell")}}};
    }
    if (kind == "group") {
        if (get("group_name").empty())
            return fail(Errc::invalid_argument, "group entity: group_name is required");
        return std::pair{
            +[](Database& d) { return &d.group; },
            accounts::Line{{get("group_name"), get("password").empty() ? "x" : get("password"),
                            get("gid"), get("users")}}};
    }
    if (kind == "shadow") {
        if (get("username").empty())
            return fail(Errc::invalid_argument, "shadow entity: username is required");
        std::string last = get("last_changed");
        if (last == "now" || last.empty()) last = std::to_string(accounts::days_since_epoch());
        return std::pair{+[](Database& d) { return &d.shadow; },
                         accounts::Line{{get("username"), get("password"), last,
                                         get("minimum_changed"), get("maximum_changed"),
                                         get("warn"), get("inactive"), get("expire"), ""}}};
    }
    if (kind == "gshadow") {
        if (get("name").empty())
            return fail(Errc::invalid_argument, "gshadow entity: name is required");
        return std::pair{
            +[](Database& d) { return &d.gshadow; },
            accounts::Line{{get("name"), get("password"), get("administrators"), get("members")}}};
    }
    return fail(Errc::invalid_argument, "unknown entity kind '{}'", kind);
}

void apply_entities(const std::vector<config::EntitySpec>& list, bool remove, StageContext& ctx,
                    ModuleResult& r) {
    if (list.empty()) return;
    auto db = Database::load(ctx.root, true);
    if (!db) {
        r.error(db.error().what());
        return;
    }
    std::vector<std::string> done;
    for (const auto& e : list) {
        auto line = entity_line(e.entity);
        if (!line) {
            r.error(line.error().what());
            continue;
        }
        accounts::Table* t = line->first(*db);
        if (!e.path.empty() && e.path != t->path()) {
            r.error(fmt::format("entity for {}: only the system databases ({}) are supported",
                                e.path, t->path()));
            continue;
        }
        const std::string name = line->second.name();
        if (remove) {
            if (t->erase(name)) done.push_back(fmt::format("removed {} from {}", name, t->path()));
        } else {
            const bool had = t->find(name) != nullptr;
            const std::string before = t->render();
            t->upsert(line->second);
            if (t->render() != before)
                done.push_back(
                    fmt::format("{} {} in {}", had ? "updated" : "added", name, t->path()));
        }
    }
    if (done.empty()) return;
    if (r.check(db->save(ctx.root)))
        for (auto& d : done)
            r.change(std::move(d));
}

}  // namespace

void ensure_entities(const config::Step& s, StageContext& ctx, ModuleResult& r) {
    apply_entities(s.ensure_entities, false, ctx, r);
}

void delete_entities(const config::Step& s, StageContext& ctx, ModuleResult& r) {
    apply_entities(s.delete_entities, true, ctx, r);
}

}  // namespace ballast::stages::modules
