#include "ballast/config/decode.hpp"

#include <algorithm>
#include <array>
#include <set>
#include <type_traits>

#include "ballast/config/fields.hpp"
#include "ballast/config/network.hpp"
#include "ballast/config/reader.hpp"
#include "ballast/config/stage_names.hpp"
#include "ballast/config/template.hpp"
#include "ballast/core/encoding.hpp"
#include "ballast/core/root.hpp"
#include "ballast/core/suggest.hpp"
#include "ballast/core/text.hpp"
#include "ballast/datasource/providers.hpp"

namespace ballast::config {
namespace {

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

using K = FieldKind;

struct Ignored {};  // the model of a block Ballast validates and does not use

template <class T, size_t... N>
constexpr auto join(const std::array<Field<T>, N>&... parts) {
    std::array<Field<T>, (N + ...)> out{};
    size_t i = 0;
    ((std::copy(parts.begin(), parts.end(), out.begin() + static_cast<std::ptrdiff_t>(i)),
      i += parts.size()),
     ...);
    return out;
}

// A string rendered with the node's facts ({{ .Values.node.hostname }}).
template <auto M, class T>
void rendered(const MapReader& r, std::string_view key, T& out, DecodeContext& ctx) {
    if (const Node* n = r.get(key); n && n->is_scalar())
        out.*M = render(*n, n->scalar, ctx);
    else
        (void)r.read(key, out.*M);
}

// A path that must be given, absolute and normal.
template <auto M, class T>
void required_path(const MapReader& r, std::string_view key, T& out, DecodeContext&) {
    (void)r.read(key, out.*M);
    check_abs_path(r, key, out.*M);
}

// A path that may be left out; when given, absolute and normal.
template <auto M, class T>
void optional_path(const MapReader& r, std::string_view key, T& out, DecodeContext&) {
    if (r.read(key, out.*M)) check_abs_path(r, key, out.*M);
}

// A list of blocks, each decoded by `item` (which names its own position).
template <class Item>
std::vector<Item> list_of(const MapReader& r, std::string_view key, DecodeContext& ctx,
                          Item (*item)(const Node&, const std::string&, DecodeContext&)) {
    std::vector<Item> out;
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

template <auto M, auto Item, class T>
void block_list(const MapReader& r, std::string_view key, T& out, DecodeContext& ctx) {
    out.*M = list_of(r, key, ctx, Item);
}

// A block (or list of blocks) validated with its table and otherwise unused.
template <const auto& Sub, class T>
void validated(const MapReader& r, std::string_view key, T&, DecodeContext& ctx) {
    Ignored unused;
    Sub.decode(r.sub(key), unused, ctx);
}

template <const auto& Sub>
Ignored validate_item(const Node& n, const std::string& where, DecodeContext& ctx) {
    Ignored unused;
    Sub.decode(MapReader(&n, ctx.diags, where), unused, ctx);
    return unused;
}

template <const auto& Sub, class T>
void validated_list(const MapReader& r, std::string_view key, T&, DecodeContext& ctx) {
    (void)list_of(r, key, ctx, &validate_item<Sub>);
}

// owner: "user", "1000" or "user:group"; group: a name or id; owner_string: "user:group" (yip).
template <class T>
void owner(const MapReader& r, std::string_view key, T& out, DecodeContext&) {
    std::string s;
    if (!r.read(key, s)) return;
    if (key == "group")
        out.group = owner_ref(r, key, s);
    else if (key != "owner" || s.find(':') != std::string::npos)
        owner_string(r, key, s, out.owner, out.group);
    else
        out.owner = owner_ref(r, key, s);
}

template <class T>
constexpr std::array<Field<T>, 4> ownership_fields() {
    return {{{{"owner", K::string, "owner: a user name or id, or user:group"}, &owner<T>},
             {{"group", K::string, "group: a name or id"}, &owner<T>},
             {{"owner_string", K::string, "user:group (yip)"}, &owner<T>},
             {{"ownerstring", K::string, "user:group (yip's older spelling)"}, &owner<T>}}};
}

// A file's content, decoded (base64, gzip) and then rendered.
void file_content(const MapReader& r, std::string_view, FileSpec& f, DecodeContext& ctx) {
    std::string content, encoding;
    (void)r.read("content", content);
    (void)r.read("encoding", encoding);
    auto decoded = decode_encoding(content, encoding);
    if (!decoded) {
        r.error(r.has("encoding") ? "encoding" : "content", decoded.error().message());
    } else {
        const Node* cn = r.get("content");
        f.content = cn ? render(*cn, *decoded, ctx) : *decoded;
    }
}

constexpr auto kFileFields = join<FileSpec>(
    std::to_array<Field<FileSpec>>({
        {{"path", K::string, "absolute path of the file"}, &required_path<&FileSpec::path>},
        {{"content", K::string, "the file's content (templates rendered)"}, &file_content},
        {{"encoding", K::string, "b64, base64, gz, gzip, gz+b64 or gzip+base64"}},  // by content
        {{"permissions", K::mode, "file mode (default 0644 for write_files)"},
         &read::mode<&FileSpec::mode>},
    }),
    ownership_fields<FileSpec>(),
    std::to_array<Field<FileSpec>>({
        {{"append", K::boolean, "append to the file instead of replacing it (Ballast)"},
         &read::value<&FileSpec::append>},
        {{"defer", K::boolean, "accepted for cloud-init; files are written when their stage runs"}},
    }));
constexpr Table<FileSpec> kFile{"file", "A file to write", Severity::warning, kFileFields};

constexpr auto kDirectoryFields = join<DirectorySpec>(
    std::to_array<Field<DirectorySpec>>({
        {{"path", K::string, "absolute path of the directory"},
         &required_path<&DirectorySpec::path>},
        {{"permissions", K::mode, "directory mode"}, &read::mode<&DirectorySpec::mode>},
    }),
    ownership_fields<DirectorySpec>());
constexpr Table<DirectorySpec> kDirectory{"directory", "A directory to create", Severity::warning,
                                          kDirectoryFields};

void download_url(const MapReader& r, std::string_view key, DownloadSpec& d, DecodeContext&) {
    (void)r.read(key, d.url);
    if (d.url.empty())
        r.diags().error(r.node()->pos, r.where() + ": 'url' is required");
    else if (!is_http_url(d.url))
        r.error(key, "only http:// and https:// URLs are supported");
}

void download_sha256(const MapReader& r, std::string_view key, DownloadSpec& d, DecodeContext&) {
    (void)r.read(key, d.sha256);
    d.sha256 = ascii_lower(d.sha256);
    if (!d.sha256.empty() && !is_sha256_hex(d.sha256))
        r.error(key, "expected 64 hexadecimal digits");
}

void download_timeout(const MapReader& r, std::string_view key, DownloadSpec& d, DecodeContext&) {
    uint32_t t = 0;
    if (r.read(key, t, 0, 86400)) d.timeout = std::chrono::seconds(t);
}

constexpr auto kDownloadFields = join<DownloadSpec>(
    std::to_array<Field<DownloadSpec>>({
        {{"path", K::string, "absolute path to download to"}, &required_path<&DownloadSpec::path>},
        {{"url", K::string, "http:// or https:// URL"}, &download_url},
        {{"sha256", K::string, "expected SHA-256 (64 hex digits); kept while it matches"},
         &download_sha256},
        {{"permissions", K::mode, "file mode"}, &read::mode<&DownloadSpec::mode>},
    }),
    ownership_fields<DownloadSpec>(),
    std::to_array<Field<DownloadSpec>>({
        {{"timeout", K::integer, "seconds the download may take (0-86400; 0: the default)"},
         &download_timeout},
    }));
constexpr Table<DownloadSpec> kDownload{"download", "A file to download", Severity::warning,
                                        kDownloadFields};

// Optional user fields are std::optional: absent stays "not given".
template <auto M>
void optional_string(const MapReader& r, std::string_view key, UserSpec& u, DecodeContext&) {
    if (std::string s; r.read(key, s)) u.*M = s;
}

void user_name(const MapReader& r, std::string_view key, UserSpec& u, DecodeContext&) {
    (void)r.read(key, u.name);
    const auto& where = r.where();
    if (u.name.empty())
        r.diags().error(r.node()->pos, where + ": 'name' is required");
    else if (u.name.find_first_of(":\n/ ") != std::string::npos || u.name.front() == '-')
        r.diags().error(r.node()->pos,
                        fmt::format("{}: '{}' is not a valid user name", where, u.name));
}

void user_homedir(const MapReader& r, std::string_view key, UserSpec& u, DecodeContext&) {
    if (std::string s; r.read(key, s)) {
        u.homedir = s;
        check_abs_path(r, key, s);
    }
}

void user_uid(const MapReader& r, std::string_view key, UserSpec& u, DecodeContext&) {
    if (std::string s; r.read(key, s)) {
        u.uid = s;
        if (!all_decimal(s) || !parse_id(s))
            r.error(key, fmt::format("'{}' is not a user id (0-4294967294)", s));
    }
}

// cloud-init also accepts "a, b" for groups.
void user_groups(const MapReader& r, std::string_view key, UserSpec& u, DecodeContext&) {
    const Node* g = r.get(key);
    if (!g || !g->is_scalar()) {
        (void)r.read(key, u.groups);
        return;
    }
    const std::string& list = g->scalar;
    size_t i = 0;
    while (i <= list.size()) {
        size_t j = list.find(',', i);
        if (j == std::string::npos) j = list.size();
        auto item = list.substr(i, j - i);
        auto b = item.find_first_not_of(' '), e = item.find_last_not_of(' ');
        if (b != std::string::npos) u.groups.push_back(item.substr(b, e - b + 1));
        i = j + 1;
    }
}

// In the order cloud-init documents them; the reads run in this order too.
constexpr Field<UserSpec> kUserFields[] = {
    {{"name", K::string, "login name (the mapping key in yip's users: form)"}, &user_name},
    {{"passwd", K::string, "password: clear text or a crypt(3) hash"},
     &optional_string<&UserSpec::passwd>},
    {{"lock_passwd", K::boolean, "lock password login"}, &read::value<&UserSpec::lock_passwd>},
    {{"gecos", K::string, "full name"}, &optional_string<&UserSpec::gecos>},
    {{"homedir", K::string, "home directory"}, &user_homedir},
    {{"no_create_home", K::boolean, "do not create the home directory"},
     &read::value<&UserSpec::no_create_home>},
    {{"primary_group", K::string, "primary group"}, &optional_string<&UserSpec::primary_group>},
    {{"groups", K::string_or_list, "supplementary groups: a list, or \"a, b\""}, &user_groups},
    {{"no_user_group", K::boolean, "accepted for cloud-init"}},
    {{"system", K::boolean, "a system account"}, &read::value<&UserSpec::system>},
    {{"no_log_init", K::boolean, "accepted for cloud-init"}},
    {{"shell", K::string, "login shell"}, &optional_string<&UserSpec::shell>},
    {{"uid", K::string, "user id"}, &user_uid},
    {{"ssh_authorized_keys", K::strings, "SSH keys; github:NAME, gitlab:NAME or https:// fetch"},
     &read::value<&UserSpec::ssh_authorized_keys>},
    {{"sudo", K::any, "accepted for cloud-init (use groups: [sudo])"}},
};
constexpr Table<UserSpec> kUser{"user", "A user account", Severity::warning, kUserFields};

UserSpec decode_user(const Node& n, std::string name, const std::string& where,
                     DecodeContext& ctx) {
    UserSpec u;
    u.pos = n.pos;
    u.name = std::move(name);
    kUser.decode(MapReader(&n, ctx.diags, where), u, ctx);
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

template <auto M, class T>
void commands(const MapReader& r, std::string_view key, T& out, DecodeContext& ctx) {
    out.*M = decode_commands(r, key, ctx);
}

void entity_text(const MapReader& r, std::string_view key, EntitySpec& e, DecodeContext& ctx) {
    std::string text;
    if (!r.read(key, text)) {
        r.diags().error(r.node()->pos, r.where() + ": 'entity' is required");
        return;
    }
    text = render(*r.get(key), text, ctx);
    Diagnostics inner;
    auto parsed = parse_tree(text, r.field(key), inner);
    if (!parsed || !parsed->is_mapping()) {
        r.error(key, "not a valid entity document");
        return;
    }
    e.entity = std::move(*parsed);
    const Node* kind = e.entity.find("kind");
    static const std::set<std::string> kinds = {"user", "group", "shadow", "gshadow"};
    if (!kind || !kind->is_scalar() || !kinds.count(kind->scalar))
        r.error(key, "'kind' must be user, group, shadow or gshadow");
}

constexpr Field<EntitySpec> kEntityFields[] = {
    {{"path", K::string, "the database file (default: the kind's)"},
     &read::value<&EntitySpec::path>},
    {{"entity", K::string, "YAML document with kind: user, group, shadow or gshadow"},
     &entity_text},
};
constexpr Table<EntitySpec> kEntity{"entity", "An /etc/passwd-style entry", Severity::warning,
                                    kEntityFields};

template <const auto& Sub, class Item = typename std::remove_cvref_t<decltype(Sub)>::Model>
Item decode_item(const Node& n, const std::string& where, DecodeContext& ctx) {
    Item item;
    item.pos = n.pos;
    Sub.decode(MapReader(&n, ctx.diags, where), item, ctx);
    return item;
}

constexpr Field<IfFiles> kIfFilesFields[] = {
    {{"any", K::strings, "run if any of these files exists"}, &read::value<&IfFiles::any>},
    {{"all", K::strings, "run if all of these files exist"}, &read::value<&IfFiles::all>},
    {{"none", K::strings, "run if none of these files exists"}, &read::value<&IfFiles::none>},
};
constexpr Table<IfFiles> kIfFiles{"if_files", "Conditions on files", Severity::error,
                                  kIfFilesFields};

// after: [{name: step}] (yip) or [step].
void step_after(const MapReader& r, std::string_view key, Step& s, DecodeContext& ctx) {
    const Node* a = r.get(key);
    if (!a || a->is_null()) return;
    if (!a->is_sequence()) {
        r.error(key, "expected a list of {name: ...}");
        return;
    }
    for (size_t i = 0; i < a->items.size(); ++i) {
        MapReader ar(&a->items[i], ctx.diags, at(r.field(key), i));
        std::string name;
        if (a->items[i].is_scalar())
            name = a->items[i].scalar;
        else
            (void)ar.read("name", name);
        if (name.empty())
            ctx.diags.error(a->items[i].pos, at(r.field(key), i) + ": a step name is required");
        else
            s.after.push_back(name);
    }
}

std::string_view service_manager(const std::string& s) {
    return s.empty() || s == "systemd" || s == "openrc" ? "" : "expected systemd or openrc";
}

constexpr Field<DnsSpec> kDnsFields[] = {
    {{"nameservers", K::strings, "name server addresses"}, &read::value<&DnsSpec::nameservers>},
    {{"search", K::strings, "search domains"}, &read::value<&DnsSpec::search>},
    {{"options", K::strings, "resolver options"}, &read::value<&DnsSpec::options>},
    {{"path", K::string, "file to write (default /etc/resolv.conf)"},
     &optional_path<&DnsSpec::path>},
};
constexpr Table<DnsSpec> kDns{"dns", "resolv.conf", Severity::warning, kDnsFields};

void command_timeout(const MapReader& r, std::string_view key, Step& s, DecodeContext&) {
    if (std::chrono::milliseconds t{}; r.read(key, t))
        s.command_timeout = std::chrono::duration_cast<std::chrono::seconds>(t);
}

// authorized_keys: {user: [keys]}
void authorized_keys(const MapReader& r, std::string_view key, Step& s, DecodeContext& ctx) {
    const Node* k = r.get(key);
    if (!k || k->is_null()) return;
    MapReader kr(k, ctx.diags, r.field(key));
    if (kr.ok())
        for (const auto& e : k->entries)
            (void)kr.read(e.key, s.authorized_keys[e.key], true);
}

void step_users(const MapReader& r, std::string_view key, Step& s, DecodeContext& ctx) {
    if (const Node* u = r.get(key)) s.users = decode_users(*u, r.field(key), ctx);
}

constexpr Field<UnitOverride> kOverrideFields[] = {
    {{"service", K::string, "the unit to override"}, &read::value<&UnitOverride::service>},
    {{"name", K::string, "drop-in file name (default override.conf)"},
     &read::value<&UnitOverride::name>},
    {{"content", K::string, "drop-in content"}, &read::value<&UnitOverride::content>},
};
constexpr Table<UnitOverride> kOverride{"override", "A systemd drop-in", Severity::warning,
                                        kOverrideFields};

UnitOverride decode_override(const Node& n, const std::string& where, DecodeContext& ctx) {
    UnitOverride u;
    MapReader r(&n, ctx.diags, where);
    kOverride.decode(r, u, ctx);
    if (u.service.empty() || u.content.empty())
        ctx.diags.error(n.pos, where + ": 'service' and 'content' are required");
    return u;
}

constexpr Field<SystemctlSpec> kSystemctlFields[] = {
    {{"enable", K::strings, "units to enable"}, &read::value<&SystemctlSpec::enable>},
    {{"disable", K::strings, "units to disable"}, &read::value<&SystemctlSpec::disable>},
    {{"mask", K::strings, "units to mask"}, &read::value<&SystemctlSpec::mask>},
    {{"start", K::strings, "units to start"}, &read::value<&SystemctlSpec::start>},
    {{"overrides", K::block_list, "drop-ins", "override"},
     &block_list<&SystemctlSpec::overrides, &decode_override>},
};
constexpr Table<SystemctlSpec> kSystemctl{"systemctl", "systemd units", Severity::warning,
                                          kSystemctlFields};

// Datasource provider names (a datasource step's, k3OS' data_sources): the known ones.
std::vector<std::string> provider_names(const MapReader& r, std::string_view key) {
    std::vector<std::string> names, out;
    (void)r.read(key, names, true);
    for (auto& p : names) {
        if (datasource::is_step_provider(p)) {
            out.push_back(std::move(p));
        } else if (p == "vmware" || p == "file" || p == "metaldata") {
            // Kairos configs list these; Ballast has no such provider yet. Not an error, so
            // that the rest of the file still applies.
            r.warning(key, fmt::format("provider '{}' is not supported: it is skipped", p));
        } else {
            r.error(key, fmt::format("unknown provider '{}' (supported: {})", p,
                                     datasource::step_provider_names()));
        }
    }
    return out;
}

void providers(const MapReader& r, std::string_view key, DatasourceSpec& d, DecodeContext&) {
    d.providers = provider_names(r, key);
}

constexpr Field<DatasourceSpec> kDatasourceFields[] = {
    {{"providers", K::strings,
      "nocloud, cdrom, config_url, aws, gcp, azure, openstack, digitalocean, hetzner, vultr, "
      "scaleway, equinix"},
     &providers},
    {{"path", K::string, "where fetched config goes (default /run/ballast/config.d)"},
     &read::value<&DatasourceSpec::path>},
    {{"config_url", K::string, "URL for the config_url provider"},
     &read::value<&DatasourceSpec::config_url>},
    {{"timeout", K::duration,
      "how long a cloud the firmware names may take to answer (Ballast; default 30s)"},
     &read::value<&DatasourceSpec::timeout>},
};
constexpr Table<DatasourceSpec> kDatasource{"datasource", "Where to fetch more config",
                                            Severity::warning, kDatasourceFields};

// layout: (Kairos) is validated here and acted on by install.
constexpr Field<Ignored> kLayoutDeviceFields[] = {
    {{"label", K::string, "the partition to expand, by label"}},
    {{"path", K::string, "the disk, by path"}},
    {{"init_disk", K::boolean, "create a new partition table"}},
    {{"disk_name", K::string, "accepted for Kairos"}},
};
constexpr Table<Ignored> kLayoutDevice{"layout_device", "The disk to lay out", Severity::warning,
                                       kLayoutDeviceFields};
constexpr Field<Ignored> kExpandFields[] = {{{"size", K::integer, "new size in MiB (0: all)"}}};
constexpr Table<Ignored> kExpand{"expand_partition", "Growing the last partition",
                                 Severity::warning, kExpandFields};
constexpr Field<Ignored> kPartitionFields[] = {
    {{"fsLabel", K::string, "filesystem label"}},    {{"size", K::integer, "size in MiB"}},
    {{"pLabel", K::string, "partition label"}},      {{"filesystem", K::string, "ext4, xfs, ..."}},
    {{"bootable", K::boolean, "set the boot flag"}},
};
constexpr Table<Ignored> kPartition{"add_partition", "A partition to add", Severity::warning,
                                    kPartitionFields};
constexpr Field<Ignored> kLayoutFields[] = {
    {{"device", K::block, "the disk", "layout_device"}, &validated<kLayoutDevice>},
    {{"expand_partition", K::block, "grow the last partition", "expand_partition"},
     &validated<kExpand>},
    {{"add_partitions", K::block_list, "partitions to add", "add_partition"},
     &validated_list<kPartition>},
};
constexpr Table<Ignored> kLayout{"layout", "Disk layout (acted on by install)", Severity::warning,
                                 kLayoutFields};

void step_layout(const MapReader& r, std::string_view key, Step& s, DecodeContext& ctx) {
    if (const Node* l = r.get(key); l && !l->is_null()) {
        s.has_layout = true;
        validated<kLayout>(r, key, s, ctx);
    }
}

constexpr char kNoGit[] = "not supported by Ballast (use downloads, or a bundle)";
constexpr char kImmutable[] =
    "not supported by Ballast: the OS image is immutable (build it into the image)";

// Step keys, yip's plus Ballast's (strict, env, timeout, append in files), in the order the
// decoder reads them.
constexpr Field<Step> kStepFields[] = {
    {{"name", K::string, "the step's name (its id is <file>.<name>)"}, &read::value<&Step::name>},
    {{"if", K::string, "run only if this shell command succeeds"}, &rendered<&Step::if_cmd>},
    {{"node", K::string, "run only on hosts whose name matches this regular expression"},
     &read::value<&Step::node>},
    {{"only_os", K::string, "run only if the OS name matches this regular expression"},
     &read::value<&Step::only_os>},
    {{"only_os_version", K::string, "run only if the OS version matches"},
     &read::value<&Step::only_os_version>},
    {{"only_arch", K::string, "run only on this architecture (regular expression)"},
     &read::value<&Step::only_arch>},
    {{"only_service_manager", K::string, "systemd or openrc"},
     &read::checked<&Step::only_service_manager, &service_manager>},
    {{"if_files", K::block, "conditions on files", "if_files"},
     &read::block<&Step::if_files, kIfFiles>},
    {{"after", K::any, "steps of this stage to run first: [{name: STEP}]"}, &step_after},
    {{"strict", K::boolean, "fail the stage if this step fails"}, &read::value<&Step::strict>},
    {{"dns", K::block, "resolv.conf", "dns"}, &read::block<&Step::dns, kDns>},
    {{"downloads", K::block_list, "files to download", "download"},
     &block_list<&Step::downloads, &decode_item<kDownload>>},
    {{"git", K::any, "not supported"}, &read::refused<kNoGit>},
    {{"ensure_entities", K::block_list, "passwd/group/shadow entries to add", "entity"},
     &block_list<&Step::ensure_entities, &decode_item<kEntity>>},
    {{"directories", K::block_list, "directories to create", "directory"},
     &block_list<&Step::directories, &decode_item<kDirectory>>},
    {{"files", K::block_list, "files to write", "file"},
     &block_list<&Step::files, &decode_item<kFile>>},
    {{"commands", K::commands, "shell commands or argument lists"}, &commands<&Step::commands>},
    {{"env", K::string_map, "environment for commands (Ballast)"},
     &read::value<&Step::command_env>},
    {{"timeout", K::duration, "time limit for each command (Ballast)"}, &command_timeout},
    {{"delete_entities", K::block_list, "passwd/group/shadow entries to remove", "entity"},
     &block_list<&Step::delete_entities, &decode_item<kEntity>>},
    {{"hostname", K::string, "the host name (templates rendered)"}, &rendered<&Step::hostname>},
    {{"sysctl", K::string_map, "kernel parameters"}, &read::value<&Step::sysctl>},
    {{"users", K::block_list_or_map, "user accounts", "user"}, &step_users},
    {{"authorized_keys", K::list_map, "SSH keys per user"}, &authorized_keys},
    {{"modules", K::strings, "kernel modules to load"}, &read::value<&Step::modules>},
    {{"timesyncd", K::string_map, "systemd-timesyncd settings"}, &read::value<&Step::timesyncd>},
    {{"systemctl", K::block, "systemd units", "systemctl"},
     &read::block<&Step::systemctl, kSystemctl>},
    {{"environment", K::string_map, "variables for the environment file"},
     &read::value<&Step::environment>},
    {{"environment_file", K::string, "default /etc/environment"},
     &optional_path<&Step::environment_file>},
    {{"systemd_firstboot", K::string_map, "systemd-firstboot settings"},
     &read::value<&Step::systemd_firstboot>},
    {{"datasource", K::block, "fetch more config", "datasource"},
     &read::block<&Step::datasource, kDatasource>},
    {{"layout", K::block, "disk layout (acted on by install)", "layout"}, &step_layout},
    {{"packages", K::any, "not supported: the image is immutable"}, &read::refused<kImmutable>},
    {{"package_pins", K::any, "not supported: the image is immutable"}, &read::refused<kImmutable>},
    {{"unpack_images", K::any, "not supported: the image is immutable"},
     &read::refused<kImmutable>},
};
constexpr Table<Step> kStep{"step", "One step of a stage (yip)", Severity::warning, kStepFields};

Step decode_step(const Node& n, const std::string& stage, const std::string& where,
                 DecodeContext& ctx) {
    Step s;
    s.pos = n.pos;
    s.stage = stage;
    kStep.decode(MapReader(&n, ctx.diags, where), s, ctx);
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

// install: Kairos' keys are all known; those Ballast does not use are accepted silently.
void install_device(const MapReader& r, std::string_view key, InstallSpec& i, DecodeContext&) {
    (void)r.read(key, i.device);
    if (!i.device.empty() && i.device != "auto" && !is_absolute_path(i.device))
        r.error(key, "expected auto or a device path such as /dev/vda");
}

void install_source(const MapReader& r, std::string_view key, InstallSpec& i, DecodeContext&) {
    if (!r.read(key, i.source)) return;
    // Kairos' spellings: file: and dir: for a local bundle, oci: and docker: for a registry
    // reference (Ballast's oci://). Only a warning for anything else: an error would drop the
    // whole file (users, keys) at every boot; the installer refuses it if it has to use it.
    for (std::string_view pre : {"file:", "dir:"})
        if (i.source.rfind(pre, 0) == 0) i.source.erase(0, pre.size());
    for (std::string_view pre : {"oci:", "docker:"})
        if (i.source.rfind(pre, 0) == 0 && i.source.rfind("oci://", 0) != 0) {
            std::string ref = i.source.substr(pre.size());
            if (ref.rfind("//", 0) == 0) ref.erase(0, 2);  // docker://REGISTRY/REPO:TAG
            i.source = "oci://" + ref;
        }
    const bool remote = i.source.rfind("oci://", 0) == 0 || i.source.rfind("https://", 0) == 0;
    if (!is_absolute_path(i.source) && !remote)
        r.warning(key,
                  "not a bundle Ballast can install (an absolute path of a .tar or folder, an "
                  "https:// URL, or oci:REGISTRY/REPO:TAG): install cannot use it");
}

void install_poweroff(const MapReader& r, std::string_view key, InstallSpec& i, DecodeContext&) {
    (void)r.read(key, i.poweroff);
    if (i.reboot && i.poweroff) r.error(key, "reboot and poweroff cannot both be true");
}

void encrypted_partitions(const MapReader& r, std::string_view key, InstallSpec& i,
                          DecodeContext&) {
    (void)r.read(key, i.encrypted_partitions);
    static const std::set<std::string> known = {"BALLAST_PERSISTENT", "COS_PERSISTENT",
                                                "BALLAST_OEM", "COS_OEM"};
    for (auto& p : i.encrypted_partitions)
        if (!known.count(p))
            r.warning(key,
                      fmt::format(
                          "'{}' is not a Ballast partition (BALLAST_PERSISTENT, BALLAST_OEM)", p));
}

struct PartitionSpec {
    std::optional<uint32_t> size_mib;
};

void partition_size(const MapReader& r, std::string_view key, PartitionSpec& p, DecodeContext&) {
    if (uint32_t v = 0; r.read(key, v, 0, 16u << 20)) p.size_mib = v;
}

constexpr Field<PartitionSpec> kInstallPartitionFields[] = {
    {{"size", K::integer, "size in MiB"}, &partition_size},
    {{"fs", K::string, "accepted for Kairos"}},
    {{"label", K::string, "accepted for Kairos"}},
    {{"partition_label", K::string, "accepted for Kairos"}},
    {{"name", K::string, "accepted for Kairos"}},
    {{"flags", K::any, "accepted for Kairos"}},
    {{"uuid", K::string, "accepted for Kairos"}},
};
constexpr Table<PartitionSpec> kInstallPartition{"install_partition", "One partition's size",
                                                 Severity::warning, kInstallPartitionFields};

void install_partition(const MapReader& r, std::string_view key, InstallSpec& i,
                       DecodeContext& ctx) {
    PartitionSpec p;
    kInstallPartition.decode(r.sub(key), p, ctx);
    if (p.size_mib) i.partition_sizes_mib[std::string(key)] = *p.size_mib;
}

constexpr Field<InstallSpec> kInstallPartitionsFields[] = {
    {{"oem", K::block, "the OEM partition", "install_partition"}, &install_partition},
    {{"persistent", K::block, "the persistent partition", "install_partition"}, &install_partition},
    {{"state", K::block, "accepted for Kairos", "install_partition"}, &install_partition},
    {{"recovery", K::block, "accepted for Kairos", "install_partition"}, &install_partition},
    {{"efi", K::block, "the EFI system partition", "install_partition"}, &install_partition},
    {{"slot", K::block, "each A/B slot", "install_partition"}, &install_partition},
};
constexpr Table<InstallSpec> kInstallPartitions{"install_partitions", "Partition sizes",
                                                Severity::warning, kInstallPartitionsFields};

constexpr Field<InstallSpec> kInstallFields[] = {
    {{"device", K::string, "auto, or the disk to install to (/dev/vda)"}, &install_device},
    {{"auto", K::boolean, "install at first boot without asking"},
     &read::value<&InstallSpec::auto_install>},
    {{"source", K::string,
      "the bundle to install: a path (file: and dir: accepted), an https:// URL, or an OCI "
      "reference (oci:REGISTRY/REPO:TAG or @sha256:...; docker: accepted)"},
     &install_source},
    {{"reboot", K::boolean, "reboot when done"}, &read::value<&InstallSpec::reboot>},
    {{"poweroff", K::boolean, "power off when done"}, &install_poweroff},
    {{"no-format", K::boolean, "keep the existing partitions"},
     &read::value<&InstallSpec::no_format>},
    {{"no_format", K::boolean, "another spelling of no-format"},
     &read::value<&InstallSpec::no_format>},
    {{"force", K::boolean, "install over an existing system"}, &read::value<&InstallSpec::force>},
    {{"encrypted_partitions", K::strings,
      "partitions to encrypt (BALLAST_PERSISTENT, BALLAST_OEM)"},
     &encrypted_partitions},
    {{"partitions", K::block, "partition sizes", "install_partitions"},
     &read::same<kInstallPartitions>},
    {{"grub_options", K::any, "accepted for Kairos"}},
    {{"env", K::any, "accepted for Kairos"}},
    {{"bind_mounts", K::any, "accepted for Kairos"}},
    {{"ephemeral_mounts", K::any, "accepted for Kairos"}},
    {{"extra-partitions", K::any, "accepted for Kairos"}},
    {{"system", K::any, "accepted for Kairos"}},
    {{"passive", K::any, "accepted for Kairos"}},
    {{"recovery-system", K::any, "accepted for Kairos"}},
    {{"nousers", K::any, "accepted for Kairos"}},
    {{"skip_copy_kcrypt_plugin", K::any, "accepted for Kairos"}},
    {{"bundles", K::any, "accepted for Kairos"}},
    {{"grub-entry-name", K::any, "accepted for Kairos"}},
    {{"extra-dirs-rootfs", K::any, "accepted for Kairos"}},
};
constexpr Table<InstallSpec> kInstall{"install", "How install lays out and fills the disk",
                                      Severity::warning, kInstallFields};

// reset: (Kairos). reboot (now, for the reset) and poweroff (when it is done) do not conflict
// in Ballast; a reset that wipes nothing is refused once the files are merged (check_config: one
// file may keep persistent, another wipe OEM).
void reset_reboot(const MapReader& r, std::string_view key, ResetSpec& spec, DecodeContext&) {
    if (bool b = false; r.read(key, b)) spec.reboot = b;
}

constexpr char kResetSource[] =
    "Ballast resets to the version the node runs (upgrade for another); ignored";

constexpr Field<ResetSpec> kResetFields[] = {
    {{"reset-persistent", K::boolean, "wipe the persistent partition (default true)"},
     &read::value<&ResetSpec::persistent>},
    {{"reset-oem", K::boolean, "wipe the OEM partition, its cloud-config (default false)"},
     &read::value<&ResetSpec::oem>},
    {{"reboot", K::boolean,
      "reboot for the reset now (default true; false: it happens at the next boot)"},
     &reset_reboot},
    {{"poweroff", K::boolean,
      "power off once the reset is done (with reboot: reboot now, power off after)"},
     &read::value<&ResetSpec::poweroff>},
    {{"source", K::any, "not supported: Ballast resets to the version the node runs"},
     &read::warned<kResetSource>},
    {{"grub-entry-name", K::any, "accepted for Kairos"}},
    {{"system", K::any, "accepted for Kairos"}},
    {{"passive", K::any, "accepted for Kairos"}},
    {{"partitions", K::any, "accepted for Kairos"}},
};
constexpr Table<ResetSpec> kReset{"reset", "What a factory reset does (Kairos)", Severity::warning,
                                  kResetFields};

void reset_block(const MapReader& r, std::string_view key, Config& cfg, DecodeContext& ctx) {
    auto rr = r.sub(key);
    if (!rr.node() || rr.node()->is_null()) return;
    cfg.reset.pos = rr.node()->pos;
    kReset.decode(rr, cfg.reset, ctx);
}

constexpr Field<K3sSpec> kK3sFields[] = {
    {{"enabled", K::boolean, "run k3s (server for k3s:, agent for k3s-agent:)"},
     &read::value<&K3sSpec::enabled>},
    {{"args", K::strings, "extra k3s arguments"}, &read::value<&K3sSpec::args>},
    {{"env", K::string_map, "k3s environment (K3S_URL, K3S_TOKEN, ...)"},
     &read::value<&K3sSpec::env>},
    {{"replace_args", K::boolean, "args replace Ballast's instead of adding to them"},
     &read::value<&K3sSpec::replace_args>},
    {{"replace_env", K::boolean, "env replaces Ballast's instead of adding to it"},
     &read::value<&K3sSpec::replace_env>},
    {{"embedded_registry", K::boolean, "k3s' embedded registry mirror"},
     &read::value<&K3sSpec::embedded_registry>},
};
constexpr Table<K3sSpec> kK3s{"k3s", "k3s (Kairos)", Severity::warning, kK3sFields};

// k3s: and k3s-agent: (Kairos); present when given, even empty.
template <auto M>
void k3s_block(const MapReader& r, std::string_view key, Config& cfg, DecodeContext& ctx) {
    auto kr = r.sub(key);
    if (!kr.node() || kr.node()->is_null()) return;
    K3sSpec& spec = cfg.*M;
    spec.present = true;
    spec.pos = kr.node()->pos;
    kK3s.decode(kr, spec, ctx);
    if (cfg.k3s.enabled && cfg.k3s_agent.enabled && M == &Config::k3s_agent)
        r.error(key, "k3s and k3s-agent cannot both be enabled on one node");
}

void kubevip_enable(const MapReader& r, std::string_view key, KubeVipSpec& v, DecodeContext&) {
    if (bool b = false; r.read(key, b)) v.enable = b;
}

constexpr Field<KubeVipSpec> kKubeVipFields[] = {
    {{"eip", K::string, "the virtual IP"}, &read::value<&KubeVipSpec::eip>},
    {{"interface", K::string, "the interface to announce it on"},
     &read::value<&KubeVipSpec::interface_name>},
    {{"enable", K::boolean, "run kube-vip (default: when eip is set)"}, &kubevip_enable},
    {{"enabled", K::boolean, "another spelling of enable"}, &kubevip_enable},
    {{"version", K::string, "kube-vip version"}, &read::value<&KubeVipSpec::version>},
    {{"manifest_url", K::string, "manifest to use instead of Ballast's"},
     &read::value<&KubeVipSpec::manifest_url>},
    {{"static_pod", K::boolean, "run as a static pod"}, &read::value<&KubeVipSpec::static_pod>},
    {{"args", K::strings, "extra kube-vip arguments"}, &read::value<&KubeVipSpec::args>},
};
constexpr Table<KubeVipSpec> kKubeVip{"kubevip", "kube-vip (Kairos)", Severity::warning,
                                      kKubeVipFields};

void kubevip_block(const MapReader& r, std::string_view key, Config& cfg, DecodeContext& ctx) {
    auto kv = r.sub(key);
    if (!kv.node() || kv.node()->is_null()) return;
    auto& v = cfg.kubevip;
    v.present = true;
    kKubeVip.decode(kv, v, ctx);
    if (v.enabled() && v.eip.empty()) kv.error("eip", "kube-vip needs an eip (the virtual IP)");
    if (!v.eip.empty() && v.eip.find_first_not_of("0123456789.:abcdefABCDEF") != std::string::npos)
        kv.error("eip", fmt::format("'{}' is not an IP address", v.eip));
}

std::string_view p2p_role(const std::string& role) {
    return role.empty() || role == "master" || role == "worker"
               ? ""
               : "expected master, worker or empty (automatic)";
}

constexpr Field<P2PSpec> kP2PFields[] = {
    {{"network_token", K::string, "edgevpn token"}, &read::value<&P2PSpec::network_token>},
    {{"network_id", K::string, "edgevpn network id"}, &read::value<&P2PSpec::network_id>},
    {{"role", K::string, "master, worker or empty (automatic)"},
     &read::checked<&P2PSpec::role, &p2p_role>},
    {{"dns", K::any, "accepted for Kairos"}},
    {{"loglevel", K::any, "accepted for Kairos"}},
    {{"minimum_nodes", K::any, "accepted for Kairos"}},
    {{"disable_dht", K::any, "accepted for Kairos"}},
    {{"dynamic_roles", K::any, "accepted for Kairos"}},
    {{"distribution", K::any, "accepted for Kairos"}},
    {{"vpn", K::any, "accepted for Kairos"}},
    {{"auto", K::any, "accepted for Kairos"}},
};
constexpr Table<P2PSpec> kP2P{"p2p", "Kairos' edgevpn (validated only)", Severity::warning,
                              kP2PFields};

void p2p_block(const MapReader& r, std::string_view key, Config& cfg, DecodeContext& ctx) {
    auto p = r.sub(key);
    if (!p.node() || p.node()->is_null()) return;
    cfg.p2p.present = true;
    kP2P.decode(p, cfg.p2p, ctx);
    p.warning("network_token",
              "p2p (edgevpn) networking is not supported by Ballast; the block is validated only");
}

// config_url: fetched once the network is up, before the network stage's own steps; the config
// it brings applies from the next stage on (Kairos fetches it the same way).
void config_url(const MapReader& r, std::string_view key, Config& cfg, DecodeContext&) {
    if (!r.read(key, cfg.config_url)) return;
    if (!is_http_url(cfg.config_url)) {
        r.error(key, "expected an http:// or https:// URL");
        return;
    }
    Step s = synthetic("config_url", "network.before", r.pos(key));
    s.id = "config_url";
    s.datasource.providers = {"config_url"};
    s.datasource.config_url = cfg.config_url;
    auto& list = cfg.stages["network.before"];
    list.insert(list.begin(), std::move(s));
}

void debug_flag(const MapReader& r, std::string_view key, Config&, DecodeContext&) {
    bool unused = false;
    (void)r.read(key, unused);
}

// growpart: (cloud-init) is validated only; install sizes the partitions.
void growpart_mode(const MapReader& r, std::string_view key, Ignored&, DecodeContext&) {
    std::string mode;
    if (r.read(key, mode) && mode != "auto" && mode != "growpart" && mode != "off" &&
        mode != "false")
        r.error(key, "expected auto, growpart or off");
}

void growpart_devices(const MapReader& r, std::string_view key, Ignored&, DecodeContext&) {
    std::vector<std::string> devices;
    (void)r.read(key, devices);
    for (const auto& d : devices)
        if (!is_absolute_path(d)) r.error(key, fmt::format("'{}' is not an absolute path", d));
}

constexpr Field<Ignored> kGrowpartFields[] = {
    {{"mode", K::string, "auto, growpart or off"}, &growpart_mode},
    {{"devices", K::strings, "devices to grow"}, &growpart_devices},
    {{"ignore_growroot_disabled", K::boolean, "accepted for cloud-init"}},
};
constexpr Table<Ignored> kGrowpart{"growpart", "cloud-init growpart (validated only)",
                                   Severity::warning, kGrowpartFields};

// k3OS' block; its keys fill the phases decode_k3os builds.
struct K3osBlock {
    K3osK3sSpec& k3s;  // merged over all files
    std::vector<std::string> modules, dns_nameservers, ntp_servers, data_sources;
    std::map<std::string, std::string> sysctl, environment;
    std::string password;
};

template <auto M>
void k3os_k3s(const MapReader& r, std::string_view key, K3osBlock& b, DecodeContext&) {
    if (!r.has(key)) return;
    b.k3s.present = true;
    if constexpr (std::is_same_v<decltype(b.k3s.*M), std::vector<std::string>&>)
        (void)r.read(key, b.k3s.*M, true);
    else
        (void)r.read(key, b.k3s.*M);
}

void k3os_data_sources(const MapReader& r, std::string_view key, K3osBlock& b, DecodeContext&) {
    b.data_sources = provider_names(r, key);
}

void k3os_environment(const MapReader& r, std::string_view key, K3osBlock& b, DecodeContext&) {
    if (r.read(key, b.environment)) b.k3s.environment = b.environment;
}

constexpr char kNoWifi[] = "not supported by Ballast (k3OS configured connman); ignored";
constexpr char kNoK3osInstall[] = "use the install: block; ignored";

constexpr Field<K3osBlock> kK3osFields[] = {
    {{"data_sources", K::string_or_list,
      "where to fetch more config once the network is up (aws, gcp, openstack, packet, ...)"},
     &k3os_data_sources},
    {{"modules", K::string_or_list, "kernel modules to load (initrd phase)"},
     &read::one_or_list<&K3osBlock::modules>},
    {{"sysctl", K::string_map, "kernel parameters"}, &read::value<&K3osBlock::sysctl>},
    {{"sysctls", K::string_map, "kernel parameters (k3OS' spelling)"},
     &read::value<&K3osBlock::sysctl>},
    {{"ntp_servers", K::string_or_list, "NTP servers"},
     &read::one_or_list<&K3osBlock::ntp_servers>},
    {{"dns_nameservers", K::string_or_list, "name servers"},
     &read::one_or_list<&K3osBlock::dns_nameservers>},
    {{"wifi", K::any, "not supported"}, &read::warned<kNoWifi>},
    {{"password", K::string, "the rancher user's password"}, &read::value<&K3osBlock::password>},
    {{"server_url", K::string, "join this k3s server"}, &k3os_k3s<&K3osK3sSpec::server_url>},
    {{"token", K::string, "the cluster token"}, &k3os_k3s<&K3osK3sSpec::token>},
    {{"labels", K::string_map, "node labels"}, &k3os_k3s<&K3osK3sSpec::labels>},
    {{"k3s_args", K::string_or_list, "extra k3s arguments"}, &k3os_k3s<&K3osK3sSpec::k3s_args>},
    {{"environment", K::string_map, "environment for the system and k3s"}, &k3os_environment},
    {{"taints", K::string_or_list, "node taints"}, &k3os_k3s<&K3osK3sSpec::taints>},
    {{"install", K::any, "not supported: use the install: block"}, &read::warned<kNoK3osInstall>},
};
constexpr Table<K3osBlock> kK3os{"k3os", "k3OS settings", Severity::warning, kK3osFields};

// Top-level keys. Those with a reader are the blocks merged over all files and decoded once
// (decode_blocks); the others are read file by file into steps (decode_file).
constexpr Field<Config> kTopFields[] = {
    {{"stages", K::block_list_map, "steps per stage (yip)", "step"}},
    {{"name", K::string, "the file's name in step ids"}},
    {{"hostname", K::string, "the host name (cloud-init)"}},
    {{"users", K::block_list_or_map, "user accounts (cloud-init)", "user"}},
    {{"ssh_authorized_keys", K::strings, "SSH keys for the users (or root)"}},
    {{"write_files", K::block_list, "files to write at boot (cloud-init)", "file"}},
    {{"runcmd", K::commands, "commands to run at boot (cloud-init)"}},
    {{"bootcmd", K::commands, "commands to run early at boot (cloud-init)"}},
    {{"growpart", K::block, "validated only", "growpart"}},
    {{"network", K::any,
      "network config (cloud-init version 1 or 2), rendered with netplan for systemd-networkd"}},
    {{"config_url", K::string, "fetch more config from this URL once the network is up"},
     &config_url},
    {{"strict", K::boolean, "fail a stage on any step error (Kairos)"},
     &read::value<&Config::strict>},
    {{"debug", K::boolean, "accepted for Kairos"}, &debug_flag},
    {{"install", K::block, "install settings (Kairos)", "install"},
     &read::block<&Config::install, kInstall>},
    {{"reset", K::block, "factory reset settings (Kairos)", "reset"}, &reset_block},
    {{"k3s", K::block, "k3s server (Kairos)", "k3s"}, &k3s_block<&Config::k3s>},
    {{"k3s-agent", K::block, "k3s agent (Kairos)", "k3s"}, &k3s_block<&Config::k3s_agent>},
    {{"kubevip", K::block, "kube-vip (Kairos)", "kubevip"}, &kubevip_block},
    {{"p2p", K::block, "edgevpn (Kairos; validated only)", "p2p"}, &p2p_block},
    {{"k3os", K::block, "k3OS settings", "k3os"}},
    {{"init_cmd", K::commands, "k3OS: commands in the initrd phase"}},
    {{"boot_cmd", K::commands, "k3OS: commands at boot"}},
    {{"run_cmd", K::commands, "k3OS: commands once the network is up"}},
};
constexpr Table<Config> kTop{"cloud-config", "A Ballast cloud-config file (#cloud-config)",
                             Severity::warning, kTopFields};

// The top-level keys decoded once over all files (those the top table reads).
bool merged_once(std::string_view key) {
    for (const auto& f : kTopFields)
        if (f.info.key == key) return f.read != nullptr;
    return false;
}

void decode_stages(const Node& n, const std::string& file, DecodeContext& ctx, Config& cfg) {
    MapReader r(&n, ctx.diags, "stages");
    if (!r.ok()) return;
    for (const auto& e : n.entries) {
        const StageName name = classify_stage(e.key);
        if (name.cls == StageClass::never)
            ctx.diags.warning(e.key_pos, fmt::format("stage '{}': {}", e.key, name.note));
        if (name.cls == StageClass::custom) {
            const std::string base = e.key.substr(0, e.key.find('.'));
            const std::string suffix =
                e.key.find('.') == std::string::npos ? "" : e.key.substr(e.key.find('.'));
            std::vector<std::string_view> known(own_stages().begin(), own_stages().end());
            const auto hint = did_you_mean(base, known);
            if (!suffix.empty() && suffix != ".before" && suffix != ".after" &&
                classify_stage(base).cls == StageClass::own)
                ctx.diags.warning(
                    e.key_pos,
                    fmt::format("stage '{}': only .before and .after suffixes run", e.key));
            else
                ctx.diags.warning(
                    e.key_pos, fmt::format("custom stage '{}' runs only when asked for by name{}",
                                           e.key, hint));
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
        s.files = list_of(top, "write_files", ctx, &decode_item<kFile>);
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
    validated<kGrowpart>(top, "growpart", cfg, ctx);
}

// k3OS keys: phases mapped to stages the way k3OS ran them (docs/cloud-config.md).
void decode_k3os(const Node& tree, const std::string& file, DecodeContext& ctx, Config& cfg) {
    MapReader top(&tree, ctx.diags, "");
    K3osBlock k{cfg.k3os, {}, {}, {}, {}, {}, {}, {}};
    kK3os.decode(top.sub("k3os"), k, ctx);
    // initrd phase
    Step init = synthetic("k3os-initrd", "initramfs", top.node()->pos);
    init.modules = k.modules;
    init.sysctl = k.sysctl;
    if (const Node* h = top.get("hostname"); h && h->is_scalar())
        init.hostname = render(*h, h->scalar, ctx);
    init.files = list_of(top, "write_files", ctx, &decode_item<kFile>);
    for (auto& f : init.files)
        if (!f.mode) f.mode = 0644;
    init.environment = k.environment;
    init.commands = decode_commands(top, "init_cmd", ctx);
    add_steps(cfg, "initramfs", {std::move(init)}, file);
    // boot phase
    Step boot = synthetic("k3os-boot", "boot", top.node()->pos);
    boot.dns.nameservers = k.dns_nameservers;
    if (!k.ntp_servers.empty()) {
        std::string joined;
        for (const auto& n : k.ntp_servers)
            joined += (joined.empty() ? "" : " ") + n;
        boot.timesyncd["NTP"] = joined;
    }
    std::vector<std::string> keys, remote;
    top.read("ssh_authorized_keys", keys, true);
    if (!k.password.empty() || !keys.empty()) {
        // k3OS's login user.
        UserSpec u;
        u.pos = top.pos(k.password.empty() ? "ssh_authorized_keys" : "k3os");
        u.name = "rancher";
        if (!k.password.empty()) u.passwd = k.password;
        u.shell = "/bin/bash";
        u.groups = {"sudo"};
        for (auto& key : keys)
            (is_remote_key(key) ? remote : u.ssh_authorized_keys).push_back(key);
        boot.users.push_back(std::move(u));
    }
    boot.commands = decode_commands(top, "boot_cmd", ctx);
    add_steps(cfg, "boot", {std::move(boot)}, file);
    // k3OS asked its data sources once the network was up, before running anything there.
    if (!k.data_sources.empty()) {
        Step ds = synthetic("k3os-data_sources", "network.before", top.pos("k3os"));
        ds.datasource.providers = k.data_sources;
        add_steps(cfg, "network.before", {std::move(ds)}, file);
    }
    // runtime phase: after the network is up
    Step run = synthetic("k3os-run", "network", top.node()->pos);
    if (!remote.empty()) run.authorized_keys["rancher"] = remote;
    run.commands = decode_commands(top, "run_cmd", ctx);
    add_steps(cfg, "network", {std::move(run)}, file);
}

}  // namespace

void decode_file(const SourceFile& src, const Node& tree, DecodeContext& ctx, Config& cfg,
                 Node& blocks) {
    if (tree.is_null()) return;
    if (!tree.is_mapping()) {
        ctx.diags.error(tree.pos, fmt::format("expected a mapping at the top level, found a {}",
                                              tree.kind_name()));
        return;
    }
    MapReader top(&tree, ctx.diags, "");
    top.check_keys(kTop.keys(), Severity::warning);
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
    for (const auto& e : tree.entries)
        if (e.key == "network" && src.kind != SourceKind::k3os)
            decode_network(e.value, e.key_pos, src.text, ctx, cfg);

    Node mine;
    mine.kind = Node::Kind::mapping;
    mine.pos = tree.pos;
    for (const auto& e : tree.entries)
        if (merged_once(e.key)) mine.entries.push_back(e);
    if (blocks.is_null())
        blocks = mine;
    else
        merge_tree(blocks, mine);
}

void decode_blocks(const Node& blocks, DecodeContext& ctx, Config& cfg) {
    kTop.read_fields(MapReader(&blocks, ctx.diags, ""), cfg, ctx);
}

void check_config(const Config& cfg, Diagnostics& diags) {
    if (!cfg.reset.persistent && !cfg.reset.oem)
        diags.error(cfg.reset.pos,
                    "reset: reset-persistent and reset-oem are both false: a reset would wipe "
                    "nothing");
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

std::vector<std::string_view> step_keys() {
    return kStep.keys();
}

std::vector<BlockInfo> cloud_config_blocks() {
    return {describe(kTop),
            describe(kStep),
            describe(kFile),
            describe(kDirectory),
            describe(kDownload),
            describe(kUser),
            describe(kEntity),
            describe(kIfFiles),
            describe(kDns),
            describe(kSystemctl),
            describe(kOverride),
            describe(kDatasource),
            describe(kLayout),
            describe(kLayoutDevice),
            describe(kExpand),
            describe(kPartition),
            describe(kGrowpart),
            describe(kInstall),
            describe(kInstallPartitions),
            describe(kInstallPartition),
            describe(kReset),
            describe(kK3s),
            describe(kKubeVip),
            describe(kP2P),
            describe(kK3os)};
}

}  // namespace ballast::config
