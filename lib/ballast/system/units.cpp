#include "ballast/system/units.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "ballast/core/files.hpp"

namespace ballast::units {
namespace {

constexpr const char* kEtc = "/etc/systemd/system";

bool has_unit_suffix(const std::string& n) {
    static const char* suffixes[] = {".service", ".socket",    ".target", ".timer",
                                     ".mount",   ".automount", ".path",   ".slice",
                                     ".scope",   ".swap",      ".device"};
    for (auto s : suffixes) {
        std::string_view sv(s);
        if (n.size() > sv.size() && n.compare(n.size() - sv.size(), sv.size(), sv) == 0)
            return true;
    }
    return false;
}

std::vector<std::string> words(const std::string& v) {
    std::vector<std::string> out;
    std::istringstream in(v);
    std::string w;
    while (in >> w)
        out.push_back(w);
    return out;
}

// "foo@bar.service" -> "foo@.service"; "" for non-instances.
std::string template_of(const std::string& name) {
    auto at = name.find('@');
    auto dot = name.rfind('.');
    if (at == std::string::npos || dot == std::string::npos || dot <= at + 1) return "";
    return name.substr(0, at + 1) + name.substr(dot);
}

std::string instance_name(const std::string& tmpl, const std::string& instance) {
    auto at = tmpl.find('@');
    return tmpl.substr(0, at + 1) + instance + tmpl.substr(tmpl.rfind('.'));
}

Result<bool> link_points_to(const RootPrefix& root, const std::string& link,
                            const std::string& target) {
    auto cur = BALLAST_TRY(readlink_beneath(root, link));
    return cur && *cur == target;
}

}  // namespace

const std::vector<std::string>& search_path() {
    static const std::vector<std::string> p = {"/etc/systemd/system", "/run/systemd/system",
                                               "/usr/local/lib/systemd/system",
                                               "/lib/systemd/system", "/usr/lib/systemd/system"};
    return p;
}

std::string normalize_name(const std::string& name) {
    return has_unit_suffix(name) ? name : name + ".service";
}

Result<UnitFile> find_unit(const RootPrefix& root, const std::string& raw) {
    UnitFile u;
    u.name = normalize_name(raw);
    if (u.name.find('/') != std::string::npos)
        return fail(Errc::invalid_argument, "{}: not a unit name", raw);
    const std::string tmpl = template_of(u.name);
    std::optional<std::string> text;
    for (const auto& dir : search_path()) {
        for (const auto& candidate : {u.name, tmpl}) {
            if (candidate.empty()) continue;
            auto st = BALLAST_TRY(stat_beneath(root, dir + "/" + candidate));
            // A masked or linked unit in /etc is a symlink; a real file anywhere wins.
            if (!st || !S_ISREG(st->st_mode)) continue;
            u.path = dir + "/" + candidate;
            text = BALLAST_TRY(read_beneath(root, u.path));
            break;
        }
        if (text) break;
    }
    if (!text) return fail(Errc::not_found, "unit {} not found on the node", u.name);
    bool in_install = false;
    std::istringstream in(*text);
    std::string line;
    while (std::getline(in, line)) {
        auto b = line.find_first_not_of(" \t");
        if (b == std::string::npos || line[b] == '#' || line[b] == ';') continue;
        line = line.substr(b);
        if (line.front() == '[') {
            in_install = line.rfind("[Install]", 0) == 0;
            continue;
        }
        if (!in_install) continue;
        auto eq = line.find('=');
        if (eq == std::string::npos) continue;
        std::string k = line.substr(0, line.find_last_not_of(" \t", eq - 1) + 1);
        std::string v = line.substr(eq + 1);
        auto append = [&](std::vector<std::string>& to) {
            auto w = words(v);
            if (w.empty()) to.clear();
            to.insert(to.end(), w.begin(), w.end());
        };
        if (k == "WantedBy")
            append(u.wanted_by);
        else if (k == "RequiredBy")
            append(u.required_by);
        else if (k == "Alias")
            append(u.alias);
        else if (k == "Also")
            append(u.also);
        else if (k == "DefaultInstance")
            u.default_instance = words(v).empty() ? "" : words(v)[0];
    }
    return u;
}

Result<std::vector<std::string>> enable(const RootPrefix& root, const std::string& name) {
    auto u = BALLAST_TRY(find_unit(root, name));
    std::vector<std::string> made;
    // A template enabled without an instance uses its DefaultInstance.
    std::string linked = u.name;
    const std::string tmpl = template_of(u.name);
    if (u.name.find("@.") != std::string::npos) {
        if (u.default_instance.empty() && (!u.wanted_by.empty() || !u.required_by.empty()))
            return fail(Errc::invalid_argument,
                        "{}: a template needs an instance (no DefaultInstance=)", u.name);
        if (!u.default_instance.empty()) linked = instance_name(u.name, u.default_instance);
    }
    auto ensure_link = [&](const std::string& link) -> Status {
        if (BALLAST_TRY(link_points_to(root, link, u.path))) return {};
        auto [parent, base] = split_node_path(link);
        BALLAST_TRY(mkdirs_beneath(root, parent, 0755));
        BALLAST_TRY(symlink_beneath(root, link, u.path));
        made.push_back(link);
        return {};
    };
    for (const auto& alias : u.alias)
        BALLAST_TRY(ensure_link(std::string(kEtc) + "/" + alias));
    for (const auto& t : u.wanted_by)
        BALLAST_TRY(ensure_link(std::string(kEtc) + "/" + t + ".wants/" + linked));
    for (const auto& t : u.required_by)
        BALLAST_TRY(ensure_link(std::string(kEtc) + "/" + t + ".requires/" + linked));
    for (const auto& also : u.also) {
        auto more = BALLAST_TRY(enable(root, also));
        made.insert(made.end(), more.begin(), more.end());
    }
    (void)tmpl;
    return made;
}

Result<std::vector<std::string>> disable(const RootPrefix& root, const std::string& raw) {
    const std::string name = normalize_name(raw);
    std::vector<std::string> removed;
    auto u = find_unit(root, name);
    std::vector<std::string> names = {name};
    if (u) names.insert(names.end(), u->alias.begin(), u->alias.end());
    auto host = BALLAST_TRY(root.resolve(kEtc));
    std::error_code ec;
    std::vector<std::string> links;
    for (auto it = std::filesystem::recursive_directory_iterator(host, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
        if (!it->is_symlink(ec)) continue;
        std::string fname = it->path().filename();
        if (std::find(names.begin(), names.end(), fname) == names.end() &&
            !(u && u->name.find("@.") != std::string::npos && template_of(fname) == u->name))
            continue;
        std::string node = std::string(kEtc) + it->path().string().substr(host.string().size());
        auto target = BALLAST_TRY(readlink_beneath(root, node));
        if (target && *target == "/dev/null") continue;  // a mask is not an enablement
        links.push_back(node);
    }
    std::sort(links.begin(), links.end());
    for (const auto& l : links)
        if (BALLAST_TRY(remove_beneath(root, l))) removed.push_back(l);
    if (u)
        for (const auto& also : u->also) {
            auto more = BALLAST_TRY(disable(root, also));
            removed.insert(removed.end(), more.begin(), more.end());
        }
    return removed;
}

Result<std::vector<std::string>> mask(const RootPrefix& root, const std::string& raw) {
    const std::string link = std::string(kEtc) + "/" + normalize_name(raw);
    if (BALLAST_TRY(link_points_to(root, link, "/dev/null"))) return std::vector<std::string>{};
    auto st = BALLAST_TRY(stat_beneath(root, link));
    if (st && S_ISREG(st->st_mode))
        return fail(Errc::exists,
                    "{}: a unit file exists in /etc; refusing to replace it with a mask", link);
    BALLAST_TRY(mkdirs_beneath(root, kEtc, 0755));
    BALLAST_TRY(symlink_beneath(root, link, "/dev/null"));
    return std::vector<std::string>{link};
}

}  // namespace ballast::units
