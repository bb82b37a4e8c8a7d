#include "ballast/config/schema.hpp"

#include <string>

namespace ballast::config {
namespace {

using nlohmann::json;

json ref(std::string_view block) {
    return {{"$ref", "#/$defs/" + std::string(block)}};
}

json array_of(json item) {
    return {{"type", "array"}, {"items", std::move(item)}};
}

json map_of(json value) {
    return {{"type", "object"}, {"additionalProperties", std::move(value)}};
}

// The reader takes any scalar as a string (YAML gives `uid: 1000` a number), and YAML 1.1
// booleans (yes, on, ...) as booleans.
json scalar() {
    return {{"type", json::array({"string", "number", "boolean"})}};
}

json boolean() {
    return {{"anyOf",
             json::array({{{"type", "boolean"}},
                          {{"enum", json::array({"true",  "True",  "TRUE", "yes", "Yes", "YES",
                                                 "on",    "On",    "ON",   "y",   "Y",   "false",
                                                 "False", "FALSE", "no",   "No",  "NO",  "off",
                                                 "Off",   "OFF",   "n",    "N"})}}})}};
}

json strings() {
    return array_of(scalar());
}

json one_or_list() {
    return {{"anyOf", json::array({scalar(), strings()})}};
}

json field_schema(const FieldInfo& f) {
    switch (f.kind) {
        case FieldKind::string:
            return scalar();
        case FieldKind::boolean:
            return boolean();
        case FieldKind::integer:
            return {{"anyOf", json::array({{{"type", "integer"}, {"minimum", 0}},
                                           {{"type", "string"}, {"pattern", "^[0-9]+$"}}})}};
        case FieldKind::duration:
            return {{"anyOf",
                     json::array({{{"type", "integer"}, {"minimum", 0}}, {{"type", "string"}}})}};
        case FieldKind::mode:
            return {
                {"anyOf", json::array({{{"type", "integer"}, {"minimum", 0}},
                                       {{"type", "string"}, {"pattern", "^(0o|0O)?[0-7]+$"}}})}};
        case FieldKind::strings:
            return {{"anyOf", json::array({strings(), {{"type", "null"}}})}};
        case FieldKind::string_or_list:
            return one_or_list();
        case FieldKind::string_map:
            return map_of({{"type", json::array({"string", "number", "boolean", "null"})}});
        case FieldKind::list_map:
            return map_of(one_or_list());
        case FieldKind::block:
            return ref(f.block);
        case FieldKind::block_list:
            return array_of(ref(f.block));
        case FieldKind::block_map:
            return map_of(ref(f.block));
        case FieldKind::block_list_map:
            return map_of({{"anyOf", json::array({array_of(ref(f.block)), {{"type", "null"}}})}});
        case FieldKind::block_list_or_map:  // cloud-init lists ("default" kept), yip maps by name
            return {{"anyOf",
                     json::array({array_of({{"anyOf",
                                             json::array({ref(f.block), {{"const", "default"}}})}}),
                                  map_of(ref(f.block))})}};
        case FieldKind::commands:
            return {{"anyOf",
                     json::array(
                         {scalar(), array_of({{"anyOf", json::array({scalar(), strings()})}})})}};
        case FieldKind::any:
            break;
    }
    return json::object();
}

json block_schema(const BlockInfo& b) {
    json props = json::object();
    for (const auto& f : b.fields) {
        json s = field_schema(f);
        s["description"] = f.help;
        props[std::string(f.key)] = std::move(s);
    }
    // Unknown keys are warnings in cloud-config and errors in agent.yaml; an editor flags both.
    return {{"type", json::array({"object", "null"})},
            {"description", b.help},
            {"properties", std::move(props)},
            {"additionalProperties", false}};
}

}  // namespace

json json_schema(std::span<const BlockInfo> blocks, std::string_view id) {
    json defs = json::object();
    for (const auto& b : blocks)
        defs[std::string(b.name)] = block_schema(b);
    json out = {{"$schema", "https://json-schema.org/draft/2020-12/schema"},
                {"$id", id},
                {"$defs", std::move(defs)}};
    if (!blocks.empty()) {
        out["title"] = blocks.front().help;
        out["$ref"] = "#/$defs/" + std::string(blocks.front().name);
    }
    return out;
}

}  // namespace ballast::config
