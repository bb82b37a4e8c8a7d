#include "ballast/k3s/state.hpp"

#include <nlohmann/json.hpp>

#include "ballast/core/files.hpp"
#include "ballast/core/json.hpp"

namespace ballast::k3s {

Status save_state(const RootPrefix& root, const NodeState& s) {
    const nlohmann::json j = {{"role", name(s.role)},
                              {"unit", s.unit},
                              {"server", s.server},
                              {"source", s.source},
                              {"binary", s.binary}};
    const std::string text = json_text(j, 2) + "\n";
    auto cur = BALLAST_TRY(read_beneath(root, kStatePath));
    if (cur && *cur == text) return {};
    BALLAST_TRY(mkdirs_beneath(root, "/var/lib/ballast", 0700));
    return write_beneath(root, kStatePath, text, 0600);
}

Result<std::optional<NodeState>> load_state(const RootPrefix& root) {
    auto text = BALLAST_TRY(read_beneath(root, kStatePath));
    if (!text) return std::optional<NodeState>();
    auto j = nlohmann::json::parse(*text, nullptr, false);
    const std::string where = root(kStatePath).string();
    if (!j.is_object()) return fail(Errc::parse, "{}: not a JSON object", where);
    NodeState s;
    const std::string role = json_field<std::string>(j, "role", "");
    s.role = role == "server" ? Role::server : role == "agent" ? Role::agent : Role::none;
    if (s.role == Role::none)
        return fail(Errc::parse, "{}: role: {} is not \"server\" or \"agent\"", where,
                    j.contains("role") ? json_text(j["role"]) : "missing");
    s.unit = json_field<std::string>(j, "unit", "");
    s.server = json_field<std::string>(j, "server", "");
    s.source = json_field<std::string>(j, "source", "");
    s.binary = json_field<std::string>(j, "binary", "");
    return std::optional<NodeState>(s);
}

}  // namespace ballast::k3s
