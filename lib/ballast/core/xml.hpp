// XML documents from peers (Azure's ovf-env.xml and wireserver goal state) as a small tree, read
// with expat (dlopen()ed on first use, like the other libraries only some jobs need). Names are
// namespace-resolved; a DOCTYPE is refused (no entity expansion at all), and the document's
// size, depth and element count are bounded.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "ballast/core/result.hpp"

namespace ballast::xml {

struct Element {
    std::string ns;    // the namespace URI, empty when none
    std::string name;  // the local name
    std::string text;  // character data directly inside, entities decoded
    std::vector<Element> children;
    int line = 0;  // where it starts, for errors

    // The children named `name` in namespace `ns`.
    [[nodiscard]] std::vector<const Element*> all(std::string_view name, std::string_view ns) const;
    // The first element down `path` (child names in namespace `ns`); null when there is none.
    [[nodiscard]] const Element* find(std::initializer_list<std::string_view> path,
                                      std::string_view ns) const;
};

inline constexpr size_t kMaxDocument = 1u << 20;

// The document's root element. Errors read "WHAT:LINE: why".
[[nodiscard]] Result<Element> parse(std::string_view text, std::string_view what);

// `text` as XML character data or an attribute value: &, <, >, " and ' as entities; the control
// characters XML 1.0 cannot carry (all but tab, LF and CR) left out.
[[nodiscard]] std::string escape(std::string_view text);

}  // namespace ballast::xml
