#include <cstdio>

#include "ballast/core/json.hpp"
#include "ballast/system/sdbus.hpp"
#include "ctl.hpp"

namespace ballast::ctl {

int report_error(const Error& e) {
    std::fprintf(stderr, "agentctl: %s\n", e.what().c_str());
    switch (e.code()) {
        case Errc::unavailable:
            return kExitUnreachable;
        case Errc::permission_denied:
            return kExitDenied;
        default:
            return kExitFailure;
    }
}

Result<api::AgentClient> connect_agent(const GlobalOptions& g) {
    return api::AgentClient::connect(sdbus::effective_address(g.bus_address));
}

void print_json(const nlohmann::json& j) {
    std::printf("%s\n", json_text(j, 2).c_str());
}

}  // namespace ballast::ctl
