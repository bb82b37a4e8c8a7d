#include "ballast/config/decode.hpp"

#include <algorithm>
#include <set>

#include "ballast/config/reader.hpp"
#include "ballast/config/template.hpp"
#include "ballast/core/encoding.hpp"
#include "ballast/core/root.hpp"
#include "ballast/core/suggest.hpp"
#include "ballast/core/text.hpp"

namespace ballast::config {
namespace {

constexpr std::string_view kStages[] = {"rootfs",         "initramfs",     "fs",
                                        "boot",           "network",       "reconcile",
                                        "before-install", "after-install", "before-upgrade",
                                        "after-upgrade",  "before-reset",  "after-reset"};

// Step keys, yip's plus Ballast's (strict, env, timeout, append in files).
const std::vector<std::string_view> kStepKeys = {"name",
                                                 "if",
                                                 "node",
                                                 "only_os",
                                                 "only_os_version",
                                                 "only_arch",
                                                 "only_service_manager",
                                                 "if_files",
                                                 "after",
                                                 "strict",
                                                 "dns",
                                                 "downloads",
                                                 "git",
                                                 "ensure_entities",
                                                 "directories",
                                                 "files",
                                                 "commands",
                                                 "env",
                                                 "timeout",
                                                 "delete_entities",
                                                 "hostname",
                                                 "sysctl",
                                                 "users",
                                                 "authorized_keys",
                                                 "modules",
                                                 "timesyncd",
                                                 "systemctl",
                                                 "environment",
                                                 "environment_file",
                                                 "systemd_firstboot",
                                                 "datasource",
                                                 "layout",
                                                 "packages",
                                                 "package_pins",
                                                 "unpack_images"};

// Top-level keys of a cloud-config file.
const std::vector<std::string_view> kTopKeys = {
    "stages",      "name",      "hostname", "users",    "ssh_authorized_keys",
    "write_files", "runcmd",    "bootcmd",  "growpart", "install",
    "k3s",         "k3s-agent", "kubevip",  "p2p",      "k3os",
    "config_url",  "strict",    "debug",    "init_cmd", "boot_cmd",
    "run_cmd"};

const std::vector<std::string_view> kBlockKeys = {"install", "k3s",        "k3s-agent", "kubevip",
                                                  "p2p",     "config_url", "strict",    "debug"};

std::string at(const std::string& where, size_t i) {
    return fmt::format("{}[{}]", where, i);
}

std::string did_you_mean(std::string_view word, const std::vector<std::string_view>& known) {
    auto m = closest_match(word, known);
    return m ? fmt::format(" (did you mean '{}'?)", *m) : "";
}

// Renders templates in one string field; on error the diagnostic names the field's line.
std::string render(const Node& n, std::string text, DecodeContext& ctx) {
    if (!has_template(text)) return text;
    // Block scalars ("|", ">") start on the line after their indicator.
    Position p = n.pos;
    if (!n.plain && n.scalar.find('\n') != std::string::npos) ++p.line;
    auto r = render_template(text, ctx.facts, p);
    if (!r) {
        const auto& m = r.error().message();
        const auto at = m.find("template:");
        ctx.diags.error(n.pos, at == std::string::npos ? m : m.substr(at));
        return text;
    }
    return *r;
}

// A user or group id: 0 to 4294967294 ((uid_t)-1 means "no id" to chown and setuid).
std::optional<uint32_t> parse_id(std::string_view s) {
    auto v = parse_unsigned<uint32_t>(s);
    if (!v || *v == UINT32_MAX) return std::nullopt;
    return v;
}

bool all_decimal(std::string_view s) {
    return !s.empty() && s.find_first_not_of("0123456789") == std::string_view::npos;
}

// A number ("0", 1000) is an id; anything else a name.
OwnerRef owner_ref(const MapReader& r, std::string_view key, const std::string& s) {
    OwnerRef ref;
    if (!all_decimal(s))
        ref.name = s;
    else if (auto id = parse_id(s))
        ref.id = *id;
    else
        r.error(key, fmt::format("id {} is out of range (0-4294967294)", s));
    return ref;
}

// "user:group" or "user" (cloud-init `owner`, yip `owner_string`).
void owner_string(const MapReader& r, std::string_view key, const std::string& s, OwnerRef& owner,
                  OwnerRef& group) {
    auto colon = s.find(':');
    owner = owner_ref(r, key, s.substr(0, colon));
    if (colon != std::string::npos) group = owner_ref(r, key, s.substr(colon + 1));
}

Result<std::string> decode_encoding(const std::string& content, const std::string& enc) {
    if (enc.empty() || enc == "text/plain") return content;
    if (enc == "b64" || enc == "base64") return base64_decode(content);
    if (enc == "gz" || enc == "gzip") return gunzip(content);
    if (enc == "gz+b64" || enc == "gz+base64" || enc == "gzip+b64" || enc == "gzip+base64") {
        auto raw = BALLAST_TRY(base64_decode(content));
        return gunzip(raw);
    }
    return fail(Errc::invalid_argument,
                "unknown encoding '{}' (expected b64, base64, gz, gzip, gz+b64, gzip+base64)", enc);
}

bool check_abs_path(const MapReader& r, std::string_view key, const std::string& path) {
    if (path.empty()) {
        if (r.node())
            r.diags().error(r.node()->pos, fmt::format("{}: '{}' is required", r.where(), key));
        return false;
    }
    if (!is_absolute_path(path)) {
        r.error(key, fmt::format("'{}' is not an absolute path", path));
        return false;
    }
    if (auto n = RootPrefix::normalize(path); !n) {
        r.error(key, n.error().message());
        return false;
    }
    return true;
}

void read_ownership(const MapReader& r, OwnerRef& owner, OwnerRef& group) {
    std::string s;
    if (r.read("owner", s)) {
        if (s.find(':') != std::string::npos)
            owner_string(r, "owner", s, owner, group);
        else
            owner = owner_ref(r, "owner", s);
    }
    if (r.read("group", s)) group = owner_ref(r, "group", s);
    for (auto key : {"owner_string", "ownerstring"})
        if (r.read(key, s)) owner_string(r, key, s, owner, group);
}

FileSpec decode_file_item(const Node& n, const std::string& where, DecodeContext& ctx) {
    MapReader r(&n, ctx.diags, where);
    r.check_keys({"path", "content", "encoding", "permissions", "owner", "group", "owner_string",
                  "ownerstring", "append", "defer"},
                 Severity::warning);
    FileSpec f;
    f.pos = n.pos;
    r.read("path", f.path);
    check_abs_path(r, "path", f.path);
    std::string content, encoding;
    r.read("content", content);
    r.read("encoding", encoding);
    auto decoded = decode_encoding(content, encoding);
    if (!decoded) {
        r.error(r.has("encoding") ? "encoding" : "content", decoded.error().message());
    } else {
        const Node* cn = r.get("content");
        f.content = cn ? render(*cn, *decoded, ctx) : *decoded;
    }
    r.read_mode("permissions", f.mode);
    read_ownership(r, f.owner, f.group);
    r.read("append", f.append);
    return f;
}

DirectorySpec decode_dir_item(const Node& n, const std::string& where, DecodeContext& ctx) {
    MapReader r(&n, ctx.diags, where);
    r.check_keys({"path", "permissions", "owner", "group", "owner_string", "ownerstring"},
                 Severity::warning);
    DirectorySpec d;
    d.pos = n.pos;
    r.read("path", d.path);
    check_abs_path(r, "path", d.path);
    r.read_mode("permissions", d.mode);
    read_ownership(r, d.owner, d.group);
    return d;
}

DownloadSpec decode_download_item(const Node& n, const std::string& where, DecodeContext& ctx) {
    MapReader r(&n, ctx.diags, where);
    r.check_keys({"path", "url", "sha256", "permissions", "owner", "group", "owner_string",
                  "ownerstring", "timeout"},
                 Severity::warning);
    DownloadSpec d;
    d.pos = n.pos;
    r.read("path", d.path);
    check_abs_path(r, "path", d.path);
    r.read("url", d.url);
    if (d.url.empty())
        ctx.diags.error(n.pos, where + ": 'url' is required");
    else if (!is_http_url(d.url))
        r.error("url", "only http:// and https:// URLs are supported");
    r.read("sha256", d.sha256);
    std::transform(d.sha256.begin(), d.sha256.end(), d.sha256.begin(), ::tolower);
    if (!d.sha256.empty() && !is_sha256_hex(d.sha256))
        r.error("sha256", "expected 64 hexadecimal digits");
    r.read_mode("permissions", d.mode);
    read_ownership(r, d.owner, d.group);
    uint32_t t = 0;
    if (r.read("timeout", t, 0, 86400)) d.timeout = std::chrono::seconds(t);
    return d;
}

UserSpec decode_user(const Node& n, std::string name, const std::string& where,
                     DecodeContext& ctx) {
    MapReader r(&n, ctx.diags, where);
    r.check_keys({"name", "passwd", "lock_passwd", "gecos", "homedir", "no_create_home",
                  "primary_group", "groups", "no_user_group", "system", "no_log_init", "shell",
                  "uid", "ssh_authorized_keys", "sudo"},
                 Severity::warning);
    UserSpec u;
    u.pos = n.pos;
    u.name = std::move(name);
    r.read("name", u.name);
    if (u.name.empty())
        ctx.diags.error(n.pos, where + ": 'name' is required");
    else if (u.name.find_first_of(":\n/ ") != std::string::npos || u.name.front() == '-')
        ctx.diags.error(n.pos, fmt::format("{}: '{}' is not a valid user name", where, u.name));
    std::string s;
    if (r.read("passwd", s)) u.passwd = s;
    r.read("lock_passwd", u.lock_passwd);
    if (r.read("gecos", s)) u.gecos = s;
    if (r.read("homedir", s)) {
        u.homedir = s;
        check_abs_path(r, "homedir", s);
    }
    if (r.read("shell", s)) u.shell = s;
    if (r.read("primary_group", s)) u.primary_group = s;
    if (r.read("uid", s)) {
        u.uid = s;
        if (!all_decimal(s) || !parse_id(s))
            r.error("uid", fmt::format("'{}' is not a user id (0-4294967294)", s));
    }
    // cloud-init also accepts "a, b" for groups.
    const Node* g = r.get("groups");
    if (g && g->is_scalar()) {
        std::string list = g->scalar;
        size_t i = 0;
        while (i <= list.size()) {
            size_t j = list.find(',', i);
            if (j == std::string::npos) j = list.size();
            auto item = list.substr(i, j - i);
            auto b = item.find_first_not_of(' '), e = item.find_last_not_of(' ');
            if (b != std::string::npos) u.groups.push_back(item.substr(b, e - b + 1));
            i = j + 1;
        }
    } else {
        r.read("groups", u.groups);
    }
    r.read("no_create_home", u.no_create_home);
    r.read("system", u.system);
    r.read("ssh_authorized_keys", u.ssh_authorized_keys);
    return u;
}

std::vector<UserSpec> decode_users(const Node& n, const std::string& where, DecodeContext& ctx) {
    std::vector<UserSpec> out;
    if (n.is_null()) return out;
    if (n.is_mapping()) {  // yip: users: {name: {...}}
        for (const auto& e : n.entries)
            out.push_back(decode_user(e.value, e.key, where + "." + e.key, ctx));
    } else if (n.is_sequence()) {  // cloud-init: users: [{name: ...}], "default" is skipped
        for (size_t i = 0; i < n.items.size(); ++i) {
            if (n.items[i].is_scalar() && n.items[i].scalar == "default") continue;
            out.push_back(decode_user(n.items[i], "", at(where, i), ctx));
        }
    } else {
        ctx.diags.error(n.pos, where + ": expected a list or a mapping of users");
    }
    return out;
}

template <class T, class F>
std::vector<T> decode_list(const MapReader& r, std::string_view key, DecodeContext& ctx, F item) {
    std::vector<T> out;
    const Node* n = r.get(key);
    if (!n || n->is_null()) return out;
    if (!n->is_sequence()) {
        r.error(key, fmt::format("expected a list, found a {}", n->kind_name()));
        return out;
    }
    for (size_t i = 0; i < n->items.size(); ++i)
        out.push_back(item(n->items[i], at(r.field(key), i), ctx));
    return out;
}

// Commands may be strings or argument lists (cloud-init runcmd); a list runs without a shell.
std::vector<CommandSpec> decode_commands(const MapReader& r, std::string_view key,
                                         DecodeContext& ctx) {
    std::vector<CommandSpec> out;
    const Node* n = r.get(key);
    if (!n || n->is_null()) return out;
    if (n->is_scalar()) return {{render(*n, n->scalar, ctx), {}}};
    if (!n->is_sequence()) {
        r.error(key, "expected a list of commands");
        return out;
    }
    for (const auto& item : n->items) {
        if (item.is_scalar()) {
            out.push_back({render(item, item.scalar, ctx), {}});
        } else if (item.is_sequence()) {
            CommandSpec c;
            for (const auto& word : item.items) {
                if (!word.is_scalar()) {
                    ctx.diags.error(word.pos, r.field(key) + ": argument lists hold strings only");
                    continue;
                }
                c.argv.push_back(word.scalar);
                std::string q = "'";
                for (char ch : word.scalar)
                    q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
                c.text += (c.text.empty() ? "" : " ") + q + "'";
            }
            if (c.argv.empty())
                ctx.diags.error(item.pos, r.field(key) + ": an empty argument list");
            else
                out.push_back(std::move(c));
        } else {
            ctx.diags.error(item.pos,
                            r.field(key) + ": a command is a string or a list of strings");
        }
    }
    return out;
}

EntitySpec decode_entity(const Node& n, const std::string& where, DecodeContext& ctx) {
    MapReader r(&n, ctx.diags, where);
    r.check_keys({"path", "entity"}, Severity::warning);
    EntitySpec e;
    e.pos = n.pos;
    r.read("path", e.path);
    std::string text;
    if (!r.read("entity", text)) {
        ctx.diags.error(n.pos, where + ": 'entity' is required");
        return e;
    }
    const Node* en = r.get("entity");
    text = render(*en, text, ctx);
    Diagnostics inner;
    auto parsed = parse_tree(text, where + ".entity", inner);
    if (!parsed || !parsed->is_mapping()) {
        r.error("entity", "not a valid entity document");
        return e;
    }
    e.entity = std::move(*parsed);
    const Node* kind = e.entity.find("kind");
    static const std::set<std::string> kinds = {"user", "group", "shadow", "gshadow"};
    if (!kind || !kind->is_scalar() || !kinds.count(kind->scalar))
        r.error("entity", "'kind' must be user, group, shadow or gshadow");
    return e;
}

Step decode_step(const Node& n, const std::string& stage, const std::string& where,
                 DecodeContext& ctx) {
    MapReader r(&n, ctx.diags, where);
    r.check_keys(kStepKeys, Severity::warning);
    Step s;
    s.pos = n.pos;
    s.stage = stage;
    r.read("name", s.name);
    if (const Node* i = r.get("if"); i && i->is_scalar())
        s.if_cmd = render(*i, i->scalar, ctx);
    else
        r.read("if", s.if_cmd);
    r.read("node", s.node);
    r.read("only_os", s.only_os);
    r.read("only_os_version", s.only_os_version);
    r.read("only_arch", s.only_arch);
    r.read("only_service_manager", s.only_service_manager);
    if (!s.only_service_manager.empty() && s.only_service_manager != "systemd" &&
        s.only_service_manager != "openrc")
        r.error("only_service_manager", "expected systemd or openrc");
    {
        auto f = r.sub("if_files");
        f.check_keys({"any", "all", "none"}, Severity::error);
        f.read("any", s.if_files.any);
        f.read("all", s.if_files.all);
        f.read("none", s.if_files.none);
    }
    if (const Node* a = r.get("after"); a && !a->is_null()) {
        if (!a->is_sequence())
            r.error("after", "expected a list of {name: ...}");
        else
            for (size_t i = 0; i < a->items.size(); ++i) {
                MapReader ar(&a->items[i], ctx.diags, at(r.field("after"), i));
                std::string name;
                if (a->items[i].is_scalar())
                    name = a->items[i].scalar;
                else
                    ar.read("name", name);
                if (name.empty())
                    ctx.diags.error(a->items[i].pos,
                                    at(r.field("after"), i) + ": a step name is required");
                else
                    s.after.push_back(name);
            }
    }
    r.read("strict", s.strict);

    {
        auto d = r.sub("dns");
        d.check_keys({"nameservers", "search", "options", "path"}, Severity::warning);
        d.read("nameservers", s.dns.nameservers);
        d.read("search", s.dns.search);
        d.read("options", s.dns.options);
        if (d.read("path", s.dns.path)) check_abs_path(d, "path", s.dns.path);
    }
    s.downloads = decode_list<DownloadSpec>(r, "downloads", ctx, decode_download_item);
    if (r.has("git")) r.error("git", "not supported by Ballast (use downloads, or a bundle)");
    s.ensure_entities = decode_list<EntitySpec>(r, "ensure_entities", ctx, decode_entity);
    s.directories = decode_list<DirectorySpec>(r, "directories", ctx, decode_dir_item);
    s.files = decode_list<FileSpec>(r, "files", ctx, decode_file_item);
    s.commands = decode_commands(r, "commands", ctx);
    r.read("env", s.command_env);
    if (std::chrono::milliseconds t{}; r.read("timeout", t))
        s.command_timeout = std::chrono::duration_cast<std::chrono::seconds>(t);
    s.delete_entities = decode_list<EntitySpec>(r, "delete_entities", ctx, decode_entity);
    if (const Node* h = r.get("hostname"); h && h->is_scalar())
        s.hostname = render(*h, h->scalar, ctx);
    else
        r.read("hostname", s.hostname);
    r.read("sysctl", s.sysctl);
    if (const Node* u = r.get("users")) s.users = decode_users(*u, r.field("users"), ctx);
    if (const Node* k = r.get("authorized_keys"); k && !k->is_null()) {
        MapReader kr(k, ctx.diags, r.field("authorized_keys"));
        if (kr.ok())
            for (const auto& e : k->entries)
                kr.read(e.key, s.authorized_keys[e.key], true);
    }
    r.read("modules", s.modules);
    r.read("timesyncd", s.timesyncd);
    {
        auto sc = r.sub("systemctl");
        sc.check_keys({"enable", "disable", "mask", "start", "overrides"}, Severity::warning);
        sc.read("enable", s.systemctl.enable);
        sc.read("disable", s.systemctl.disable);
        sc.read("mask", s.systemctl.mask);
        sc.read("start", s.systemctl.start);
        s.systemctl.overrides = decode_list<UnitOverride>(
            sc, "overrides", ctx, [](const Node& o, const std::string& w, DecodeContext& c) {
                MapReader orr(&o, c.diags, w);
                orr.check_keys({"service", "name", "content"}, Severity::warning);
                UnitOverride u;
                orr.read("service", u.service);
                orr.read("name", u.name);
                orr.read("content", u.content);
                if (u.service.empty() || u.content.empty())
                    c.diags.error(o.pos, w + ": 'service' and 'content' are required");
                return u;
            });
    }
    r.read("environment", s.environment);
    if (r.read("environment_file", s.environment_file))
        check_abs_path(r, "environment_file", s.environment_file);
    r.read("systemd_firstboot", s.systemd_firstboot);
    {
        auto ds = r.sub("datasource");
        ds.check_keys({"providers", "path", "config_url"}, Severity::warning);
        ds.read("providers", s.datasource.providers);
        ds.read("path", s.datasource.path);
        ds.read("config_url", s.datasource.config_url);
        for (const auto& p : s.datasource.providers)
            if (p != "nocloud" && p != "cdrom" && p != "config_url")
                ds.error("providers", fmt::format("provider '{}' is not supported yet (supported: "
                                                  "nocloud, cdrom, config_url)",
                                                  p));
    }
    if (const Node* l = r.get("layout"); l && !l->is_null()) {
        s.has_layout = true;
        MapReader lr(l, ctx.diags, r.field("layout"));
        lr.check_keys({"device", "expand_partition", "add_partitions"}, Severity::warning);
        auto dev = lr.sub("device");
        dev.check_keys({"label", "path", "init_disk", "disk_name"}, Severity::warning);
        lr.sub("expand_partition").check_keys({"size"}, Severity::warning);
        if (const Node* parts = lr.get("add_partitions"); parts && !parts->is_null()) {
            if (!parts->is_sequence())
                lr.error("add_partitions", "expected a list");
            else
                for (size_t i = 0; i < parts->items.size(); ++i)
                    MapReader(&parts->items[i], ctx.diags, at(lr.field("add_partitions"), i))
                        .check_keys({"fsLabel", "size", "pLabel", "filesystem", "bootable"},
                                    Severity::warning);
        }
    }
    for (auto key : {"packages", "package_pins", "unpack_images"})
        if (r.has(key))
            r.error(
                key,
                "not supported by Ballast: the OS image is immutable (build it into the image)");
    return s;
}

// yip's step ids: "<file>.<name>"; every step of the list gets ".<index>" when names repeat,
// and a step without a name is its index.
void add_steps(Config& cfg, const std::string& stage, std::vector<Step> steps,
               const std::string& file) {
    std::set<std::string> seen, dup;
    for (const auto& s : steps)
        if (!s.name.empty() && !seen.insert(s.name).second) dup.insert(s.name);
    for (size_t i = 0; i < steps.size(); ++i) {
        auto& s = steps[i];
        if (s.name.empty())
            s.id = fmt::format("{}.{}", file, i);
        else if (!dup.empty())
            s.id = fmt::format("{}.{}.{}", file, s.name, i);
        else
            s.id = fmt::format("{}.{}", file, s.name);
        cfg.stages[stage].push_back(std::move(s));
    }
}

Step synthetic(const std::string& name, const std::string& stage, const Position& pos) {
    Step s;
    s.name = name;
    s.stage = stage;
    s.pos = pos;
    return s;
}

void decode_stages(const Node& n, const std::string& file, DecodeContext& ctx, Config& cfg) {
    MapReader r(&n, ctx.diags, "stages");
    if (!r.ok()) return;
    for (const auto& e : n.entries) {
        std::string base = e.key.substr(0, e.key.find('.'));
        std::string suffix =
            e.key.find('.') == std::string::npos ? "" : e.key.substr(e.key.find('.'));
        if (!suffix.empty() && suffix != ".before" && suffix != ".after")
            ctx.diags.warning(
                e.key_pos, fmt::format("stage '{}': only .before and .after suffixes run", e.key));
        if (!is_known_stage(base)) {
            std::vector<std::string_view> known(std::begin(kStages), std::end(kStages));
            ctx.diags.warning(e.key_pos,
                              fmt::format("custom stage '{}' runs only when asked for by name{}",
                                          e.key, did_you_mean(base, known)));
        }
        std::vector<Step> steps;
        if (e.value.is_null()) continue;
        if (!e.value.is_sequence()) {
            ctx.diags.error(e.value.pos, fmt::format("stages.{}: expected a list of steps", e.key));
            continue;
        }
        for (size_t i = 0; i < e.value.items.size(); ++i)
            steps.push_back(
                decode_step(e.value.items[i], e.key, fmt::format("stages.{}[{}]", e.key, i), ctx));
        add_steps(cfg, e.key, std::move(steps), file);
    }
}

// cloud-init keys, as yip's cloud-init loader maps them (docs/cloud-config.md).
void decode_cloud_init(const Node& tree, const std::string& file, DecodeContext& ctx, Config& cfg) {
    MapReader top(&tree, ctx.diags, "");
    std::vector<std::string> global_keys;
    top.read("ssh_authorized_keys", global_keys);
    std::vector<std::string> local_keys, remote_keys;
    for (auto& k : global_keys)
        (is_remote_key(k) ? remote_keys : local_keys).push_back(k);

    if (const Node* h = top.get("hostname"); h && !h->is_null()) {
        Step s = synthetic("hostname", "initramfs", top.pos("hostname"));
        if (h->is_scalar())
            s.hostname = render(*h, h->scalar, ctx);
        else
            top.error("hostname", "expected a string");
        add_steps(cfg, "initramfs", {std::move(s)}, file);
    }
    std::vector<Step> boot;
    if (const Node* b = top.get("bootcmd"); b && !b->is_null()) {
        Step s = synthetic("bootcmd", "boot.before", top.pos("bootcmd"));
        s.commands = decode_commands(top, "bootcmd", ctx);
        add_steps(cfg, "boot.before", {std::move(s)}, file);
    }
    if (const Node* w = top.get("write_files"); w && !w->is_null()) {
        Step s = synthetic("write_files", "boot", top.pos("write_files"));
        s.files = decode_list<FileSpec>(top, "write_files", ctx, decode_file_item);
        for (auto& f : s.files)
            if (!f.mode) f.mode = 0644;  // cloud-init's default
        boot.push_back(std::move(s));
    }
    const Node* users = top.get("users");
    std::vector<UserSpec> user_specs;
    if (users) user_specs = decode_users(*users, "users", ctx);
    // Keys fetched from github:/gitlab: wait for the network stage (yip); local keys go with the
    // users in boot. Global keys go to every listed user, or to root when there is none.
    std::map<std::string, std::vector<std::string>> net_keys;
    for (auto& u : user_specs) {
        auto& keys = u.ssh_authorized_keys;
        for (auto& k : keys)
            if (is_remote_key(k)) net_keys[u.name].push_back(k);
        std::erase_if(keys, [](const std::string& k) { return is_remote_key(k); });
        keys.insert(keys.end(), local_keys.begin(), local_keys.end());
        if (!remote_keys.empty())
            net_keys[u.name].insert(net_keys[u.name].end(), remote_keys.begin(), remote_keys.end());
    }
    if (user_specs.empty() && !remote_keys.empty()) net_keys["root"] = remote_keys;
    if (!user_specs.empty() || !local_keys.empty()) {
        Step s =
            synthetic("users", "boot", users ? top.pos("users") : top.pos("ssh_authorized_keys"));
        s.users = std::move(user_specs);
        if (s.users.empty()) s.authorized_keys["root"] = local_keys;
        boot.push_back(std::move(s));
    }
    if (const Node* rc = top.get("runcmd"); rc && !rc->is_null()) {
        Step s = synthetic("runcmd", "boot", top.pos("runcmd"));
        s.commands = decode_commands(top, "runcmd", ctx);
        boot.push_back(std::move(s));
    }
    if (!boot.empty()) add_steps(cfg, "boot", std::move(boot), file);
    if (!net_keys.empty()) {
        Step s = synthetic("ssh_authorized_keys", "network", top.pos("ssh_authorized_keys"));
        s.authorized_keys = std::move(net_keys);
        add_steps(cfg, "network", {std::move(s)}, file);
    }
    if (const Node* g = top.get("growpart"); g && !g->is_null()) {
        auto gr = top.sub("growpart");
        gr.check_keys({"mode", "devices", "ignore_growroot_disabled"}, Severity::warning);
        std::string mode;
        if (gr.read("mode", mode) && mode != "auto" && mode != "growpart" && mode != "off" &&
            mode != "false")
            gr.error("mode", "expected auto, growpart or off");
        std::vector<std::string> devices;
        gr.read("devices", devices);
        for (const auto& d : devices)
            if (!is_absolute_path(d))
                gr.error("devices", fmt::format("'{}' is not an absolute path", d));
    }
}

// k3OS keys: phases mapped to stages the way k3OS ran them (docs/cloud-config.md).
void decode_k3os(const Node& tree, const std::string& file, DecodeContext& ctx, Config& cfg) {
    MapReader top(&tree, ctx.diags, "");
    const Node* k = top.get("k3os");
    MapReader kr(k, ctx.diags, "k3os");
    kr.check_keys({"data_sources", "modules", "sysctl", "sysctls", "ntp_servers", "dns_nameservers",
                   "wifi", "password", "server_url", "token", "labels", "k3s_args", "environment",
                   "taints", "install"},
                  Severity::warning);
    // initrd phase
    Step init = synthetic("k3os-initrd", "initramfs", top.node()->pos);
    kr.read("modules", init.modules, true);
    kr.read("sysctl", init.sysctl);
    kr.read("sysctls", init.sysctl);
    if (const Node* h = top.get("hostname"); h && h->is_scalar())
        init.hostname = render(*h, h->scalar, ctx);
    init.files = decode_list<FileSpec>(top, "write_files", ctx, decode_file_item);
    for (auto& f : init.files)
        if (!f.mode) f.mode = 0644;
    kr.read("environment", init.environment);
    init.commands = decode_commands(top, "init_cmd", ctx);
    add_steps(cfg, "initramfs", {std::move(init)}, file);
    // boot phase
    Step boot = synthetic("k3os-boot", "boot", top.node()->pos);
    kr.read("dns_nameservers", boot.dns.nameservers, true);
    std::vector<std::string> ntp;
    if (kr.read("ntp_servers", ntp, true) && !ntp.empty()) {
        std::string joined;
        for (const auto& n : ntp)
            joined += (joined.empty() ? "" : " ") + n;
        boot.timesyncd["NTP"] = joined;
    }
    std::vector<std::string> keys, remote;
    top.read("ssh_authorized_keys", keys, true);
    std::string password;
    kr.read("password", password);
    if (!password.empty() || !keys.empty()) {
        // k3OS's login user.
        UserSpec u;
        u.pos = top.pos(password.empty() ? "ssh_authorized_keys" : "k3os");
        u.name = "rancher";
        if (!password.empty()) u.passwd = password;
        u.shell = "/bin/bash";
        u.groups = {"sudo"};
        for (auto& key : keys)
            (is_remote_key(key) ? remote : u.ssh_authorized_keys).push_back(key);
        boot.users.push_back(std::move(u));
    }
    boot.commands = decode_commands(top, "boot_cmd", ctx);
    add_steps(cfg, "boot", {std::move(boot)}, file);
    // runtime phase: after the network is up
    Step run = synthetic("k3os-run", "network", top.node()->pos);
    if (!remote.empty()) run.authorized_keys["rancher"] = remote;
    run.commands = decode_commands(top, "run_cmd", ctx);
    add_steps(cfg, "network", {std::move(run)}, file);

    if (kr.has("wifi"))
        kr.warning("wifi", "not supported by Ballast (k3OS configured connman); ignored");
    if (kr.has("data_sources"))
        kr.warning("data_sources", "use a datasource step instead (nocloud, config_url); ignored");
    if (kr.has("install")) kr.warning("install", "use the install: block; ignored");
    // k3s settings: read by the k3s module.
    auto& k3 = cfg.k3os;
    k3.present = k3.present || kr.has("server_url") || kr.has("token") || kr.has("k3s_args") ||
                 kr.has("labels") || kr.has("taints");
    kr.read("server_url", k3.server_url);
    kr.read("token", k3.token);
    kr.read("labels", k3.labels);
    kr.read("taints", k3.taints, true);
    kr.read("k3s_args", k3.k3s_args, true);
    kr.read("environment", k3.environment);
}

}  // namespace

bool is_known_stage(std::string_view name) {
    return std::find(std::begin(kStages), std::end(kStages), name) != std::end(kStages);
}

void decode_file(const SourceFile& src, const Node& tree, DecodeContext& ctx, Config& cfg,
                 Node& blocks) {
    if (tree.is_null()) return;
    if (!tree.is_mapping()) {
        ctx.diags.error(tree.pos, fmt::format("expected a mapping at the top level, found a {}",
                                              tree.kind_name()));
        return;
    }
    MapReader top(&tree, ctx.diags, "");
    top.check_keys(kTopKeys, Severity::warning);
    std::string file = src.name;
    if (const Node* name = tree.find("name"); name && name->is_scalar() && !name->scalar.empty())
        file = name->scalar;

    if (src.kind == SourceKind::k3os) {
        decode_k3os(tree, file, ctx, cfg);
    } else {
        decode_cloud_init(tree, file, ctx, cfg);
        // k3OS keys inside a #cloud-config file still work.
        if (tree.find("k3os") || tree.find("init_cmd") || tree.find("boot_cmd") ||
            tree.find("run_cmd"))
            decode_k3os(tree, file, ctx, cfg);
    }
    if (const Node* st = tree.find("stages")) decode_stages(*st, file, ctx, cfg);

    Node mine;
    mine.kind = Node::Kind::mapping;
    mine.pos = tree.pos;
    for (const auto& e : tree.entries)
        if (std::find(kBlockKeys.begin(), kBlockKeys.end(), e.key) != kBlockKeys.end())
            mine.entries.push_back(e);
    if (blocks.is_null())
        blocks = mine;
    else
        merge_tree(blocks, mine);
}

namespace {

// config_url: fetched once the network is up, before the network stage's own steps; the config
// it brings applies from the next stage on (Kairos fetches it the same way).
void decode_config_url(MapReader& top, Config& cfg) {
    if (top.read("config_url", cfg.config_url)) {
        if (!is_http_url(cfg.config_url)) {
            top.error("config_url", "expected an http:// or https:// URL");
        } else {
            Step s = synthetic("config_url", "network.before", top.pos("config_url"));
            s.id = "config_url";
            s.datasource.providers = {"config_url"};
            s.datasource.config_url = cfg.config_url;
            auto& list = cfg.stages["network.before"];
            list.insert(list.begin(), std::move(s));
        }
    }
}

// install: Kairos' keys are all known; those Ballast does not use are accepted silently.
void decode_install(MapReader& top, Config& cfg) {
    auto in = top.sub("install");
    in.check_keys({"device",
                   "auto",
                   "reboot",
                   "poweroff",
                   "no-format",
                   "no_format",
                   "force",
                   "encrypted_partitions",
                   "partitions",
                   "grub_options",
                   "env",
                   "source",
                   "bind_mounts",
                   "ephemeral_mounts",
                   "extra-partitions",
                   "system",
                   "passive",
                   "recovery-system",
                   "nousers",
                   "skip_copy_kcrypt_plugin",
                   "bundles",
                   "grub-entry-name",
                   "extra-dirs-rootfs"},
                  Severity::warning);
    auto& i = cfg.install;
    in.read("device", i.device);
    if (!i.device.empty() && i.device != "auto" && !is_absolute_path(i.device))
        in.error("device", "expected auto or a device path such as /dev/vda");
    in.read("auto", i.auto_install);
    if (in.read("source", i.source)) {
        // Kairos' spelling of a local image; Ballast installs signed bundles only. Only a
        // warning here: Kairos configs carry oci: sources, and an error would drop the whole
        // file (users, keys) at every boot; the installer refuses it if it has to use it.
        for (std::string_view pre : {"file:", "dir:"})
            if (i.source.rfind(pre, 0) == 0) i.source.erase(0, pre.size());
        if (!is_absolute_path(i.source))
            in.warning("source",
                       "not the absolute path of a bundle (.tar or folder): install "
                       "cannot use it");
    }
    in.read("reboot", i.reboot);
    in.read("poweroff", i.poweroff);
    if (i.reboot && i.poweroff) in.error("poweroff", "reboot and poweroff cannot both be true");
    in.read("no-format", i.no_format);
    in.read("no_format", i.no_format);
    in.read("force", i.force);
    in.read("encrypted_partitions", i.encrypted_partitions);
    static const std::set<std::string> known_parts = {"BALLAST_PERSISTENT", "COS_PERSISTENT",
                                                      "BALLAST_OEM", "COS_OEM"};
    for (auto& p : i.encrypted_partitions)
        if (!known_parts.count(p))
            in.warning("encrypted_partitions",
                       fmt::format(
                           "'{}' is not a Ballast partition (BALLAST_PERSISTENT, BALLAST_OEM)", p));
    auto parts = in.sub("partitions");
    parts.check_keys({"oem", "persistent", "state", "recovery", "efi", "slot"}, Severity::warning);
    if (parts.node() && parts.node()->is_mapping())
        for (const auto& e : parts.node()->entries) {
            auto pr = parts.sub(e.key);
            pr.check_keys({"size", "fs", "label", "partition_label", "name", "flags", "uuid"},
                          Severity::warning);
            uint32_t size = 0;
            if (pr.read("size", size, 0, 16u << 20)) i.partition_sizes_mib[e.key] = size;
        }
}

// k3s: and k3s-agent: (Kairos).
void decode_k3s_blocks(MapReader& top, Config& cfg) {
    for (auto [key, spec] :
         {std::pair<const char*, K3sSpec*>{"k3s", &cfg.k3s}, {"k3s-agent", &cfg.k3s_agent}}) {
        auto kr = top.sub(key);
        if (!kr.node() || kr.node()->is_null()) continue;
        kr.check_keys(
            {"enabled", "args", "env", "replace_args", "replace_env", "embedded_registry"},
            Severity::warning);
        spec->present = true;
        spec->pos = kr.node()->pos;
        kr.read("enabled", spec->enabled);
        kr.read("args", spec->args);
        kr.read("env", spec->env);
        kr.read("replace_args", spec->replace_args);
        kr.read("replace_env", spec->replace_env);
        kr.read("embedded_registry", spec->embedded_registry);
    }
    if (cfg.k3s.enabled && cfg.k3s_agent.enabled)
        top.error("k3s-agent", "k3s and k3s-agent cannot both be enabled on one node");
}

void decode_kubevip(MapReader& top, Config& cfg) {
    auto kv = top.sub("kubevip");
    if (kv.node() && !kv.node()->is_null()) {
        kv.check_keys({"eip", "interface", "enable", "enabled", "version", "manifest_url",
                       "static_pod", "args"},
                      Severity::warning);
        auto& v = cfg.kubevip;
        v.present = true;
        bool b = false;
        if (kv.read("enable", b) || kv.read("enabled", b)) v.enable = b;
        kv.read("eip", v.eip);
        kv.read("interface", v.interface_name);
        kv.read("version", v.version);
        kv.read("manifest_url", v.manifest_url);
        kv.read("static_pod", v.static_pod);
        kv.read("args", v.args);
        if (v.enabled() && v.eip.empty()) kv.error("eip", "kube-vip needs an eip (the virtual IP)");
        if (!v.eip.empty() &&
            v.eip.find_first_not_of("0123456789.:abcdefABCDEF") != std::string::npos)
            kv.error("eip", fmt::format("'{}' is not an IP address", v.eip));
    }
}

// p2p: (Kairos' edgevpn) is validated only.
void decode_p2p(MapReader& top, Config& cfg) {
    auto p = top.sub("p2p");
    if (p.node() && !p.node()->is_null()) {
        p.check_keys({"network_token", "network_id", "role", "dns", "loglevel", "minimum_nodes",
                      "disable_dht", "dynamic_roles", "distribution", "vpn", "auto"},
                     Severity::warning);
        cfg.p2p.present = true;
        p.read("network_token", cfg.p2p.network_token);
        p.read("network_id", cfg.p2p.network_id);
        p.read("role", cfg.p2p.role);
        if (!cfg.p2p.role.empty() && cfg.p2p.role != "master" && cfg.p2p.role != "worker")
            p.error("role", "expected master, worker or empty (automatic)");
        p.warning("network_token",
                  "p2p (edgevpn) networking is not supported by Ballast; the block is "
                  "validated only");
    }
}

}  // namespace

void decode_blocks(const Node& blocks, DecodeContext& ctx, Config& cfg) {
    MapReader top(&blocks, ctx.diags, "");
    decode_config_url(top, cfg);
    top.read("strict", cfg.strict);
    bool debug = false;
    top.read("debug", debug);
    decode_install(top, cfg);
    decode_k3s_blocks(top, cfg);
    decode_kubevip(top, cfg);
    decode_p2p(top, cfg);
}

void check_config(const Config& cfg, Diagnostics& diags) {
    for (const auto& [stage, steps] : cfg.stages) {
        std::set<std::string> ids;
        for (const auto& s : steps)
            ids.insert(s.id);
        for (const auto& s : steps)
            for (const auto& a : s.after)
                if (!ids.count(a) && std::none_of(steps.begin(), steps.end(),
                                                  [&](const Step& o) { return o.name == a; }))
                    diags.error(s.pos,
                                fmt::format("step '{}': after '{}': no such step in stage {}", s.id,
                                            a, stage));
    }
}

std::span<const std::string_view> step_keys() {
    return kStepKeys;
}

}  // namespace ballast::config
