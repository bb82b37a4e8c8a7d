// libFuzzer target: one cloud-config file through the whole loader and validator (header
// detection, YAML, templates, cloud-init/k3OS mapping, block merge, cross checks). Any crash,
// sanitizer report or exception escaping is a bug: bad input must become diagnostics.
#include <cstddef>
#include <cstdint>
#include <string>

#include "ballast/config/agent_settings.hpp"
#include "ballast/config/loader.hpp"
#include "ballast/core/json.hpp"

namespace {

const nlohmann::json& facts() {
    static const nlohmann::json f = {
        {"MachineID", "0123456789abcdef0123456789abcdef"},
        {"Hostname", "fuzz"},
        {"UUID", "4c4c4544-0042-3510-8052-b4c04f4e4232"},
        {"Random", "r"},
        {"Values",
         {{"node", {{"hostname", "fuzz"}}},
          {"network", nlohmann::json::array({{{"name", "eth0"}}})}}},
    };
    return f;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace ballast::config;
    std::string text(reinterpret_cast<const char*>(data), size);
    for (const char* name : {"/oem/fuzz.yaml", "/var/lib/rancher/k3os/config.yaml"}) {
        std::vector<SourceFile> src{{name, text, detect_kind(text, name)}};
        auto loaded = load_sources(std::move(src), facts());
        // As the stage report and `config show --json` print it: any bytes, never a throw.
        (void)ballast::json_text(tree_to_json(loaded.merged, true), 2);
        for (const auto& d : loaded.diags.items())
            (void)d.text();
    }
    (void)parse_agent_settings(text, "/etc/ballast/agent.yaml");
    return 0;
}
