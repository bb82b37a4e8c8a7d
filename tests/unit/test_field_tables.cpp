// The decoders' field tables (config/fields.hpp) as the schema sees them: every nested block a
// field names is described once, block kinds name a block and other kinds do not, no key twice.
#include <catch2/catch.hpp>

#include <map>
#include <set>
#include <string>

#include "ballast/config/agent_settings.hpp"
#include "ballast/config/decode.hpp"
#include "ballast/config/fields.hpp"
#include "ballast/config/schema.hpp"

using namespace ballast::config;

namespace {

bool names_block(FieldKind k) {
    return k == FieldKind::block || k == FieldKind::block_list || k == FieldKind::block_map ||
           k == FieldKind::block_list_map || k == FieldKind::block_list_or_map;
}

void check_tables(const std::vector<BlockInfo>& blocks) {
    std::map<std::string_view, int> described;
    for (const auto& b : blocks)
        ++described[b.name];
    std::set<std::string_view> referenced;
    for (const auto& b : blocks) {
        INFO(b.name);
        CHECK(described[b.name] == 1);
        CHECK(!b.help.empty());
        std::set<std::string_view> keys;
        for (const auto& f : b.fields) {
            INFO(f.key);
            CHECK(keys.insert(f.key).second);
            CHECK(!f.help.empty());
            CHECK(names_block(f.kind) == !f.block.empty());
            if (!f.block.empty()) {
                CHECK(described.count(f.block) == 1);
                referenced.insert(f.block);
            }
        }
    }
    // Every block but the top level is reachable from a field.
    for (size_t i = 1; i < blocks.size(); ++i) {
        INFO(blocks[i].name);
        CHECK(referenced.count(blocks[i].name) == 1);
    }
}

}  // namespace

TEST_CASE("cloud-config field tables are complete and consistent", "[config][table]") {
    const auto blocks = cloud_config_blocks();
    REQUIRE(blocks.front().name == "cloud-config");
    check_tables(blocks);
    // The step block is the step table the executor acts on (test_step_table.cpp).
    for (const auto& b : blocks)
        if (b.name == "step") CHECK(b.fields.size() == step_keys().size());
}

TEST_CASE("agent.yaml field tables are complete and consistent", "[config][table]") {
    const auto blocks = agent_settings_blocks();
    REQUIRE(blocks.front().name == "agent");
    check_tables(blocks);
    for (const auto& b : blocks)
        CHECK(b.unknown_keys == Severity::error);  // a misspelt safety setting is an error
}

TEST_CASE("the schema has a definition per block and refers to the top one", "[config][table]") {
    const auto blocks = cloud_config_blocks();
    const auto s = json_schema(blocks, "id");
    CHECK(s["$ref"] == "#/$defs/cloud-config");
    CHECK(s["$defs"].size() == blocks.size());
    const auto& step = s["$defs"]["step"]["properties"];
    CHECK(step["files"]["items"]["$ref"] == "#/$defs/file");
    CHECK(step["name"]["description"] == "the step's name (its id is <file>.<name>)");
    CHECK(s["$defs"]["cloud-config"]["additionalProperties"] == false);
}
