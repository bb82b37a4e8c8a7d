#include "ballast/core/xml.hpp"

#include <expat.h>

#include <algorithm>

#include "ballast/core/dynlib.hpp"

namespace ballast::xml {
namespace {

#define BALLAST_EXPAT(X)              \
    X(XML_ParserCreateNS)             \
    X(XML_ParserFree)                 \
    X(XML_SetUserData)                \
    X(XML_SetElementHandler)          \
    X(XML_SetCharacterDataHandler)    \
    X(XML_SetStartDoctypeDeclHandler) \
    X(XML_StopParser)                 \
    X(XML_Parse)                      \
    X(XML_GetErrorCode)               \
    X(XML_ErrorString)                \
    X(XML_GetCurrentLineNumber)

struct Expat {
    BALLAST_EXPAT(BALLAST_DYNLIB_DECLARE)
};

Result<const Expat*> expat() {
    return dynlib::once<Expat>([](Expat& a) {
        return dynlib::load_symbols("libexpat.so.1", "libexpat1",
                                    {BALLAST_EXPAT(BALLAST_DYNLIB_SYMBOL)});
    });
}

constexpr size_t kMaxDepth = 32;
constexpr size_t kMaxElements = 10000;
constexpr char kSep = '\x01';  // between namespace URI and local name; never in either

struct Builder {
    const Expat* x = nullptr;
    XML_Parser parser = nullptr;
    Element root;
    std::vector<Element*> open;  // the path from the root to the current element
    size_t count = 0;
    std::string refused;  // why the builder stopped the parser

    Builder() = default;
    Builder(const Builder&) = delete;
    Builder& operator=(const Builder&) = delete;
    ~Builder() {
        if (parser) x->XML_ParserFree(parser);
    }

    void stop(std::string why) {
        if (refused.empty()) refused = std::move(why);
        x->XML_StopParser(parser, XML_FALSE);
    }
};

// expat calls the handlers from C: an exception must not unwind through it.
template <typename F>
void guarded(void* data, F&& f) {
    auto* b = static_cast<Builder*>(data);
    if (!b->refused.empty()) return;
    try {
        f(b);
    } catch (const std::exception&) {
        b->stop("out of memory");
    }
}

void start(Builder* b, const XML_Char* qname) {
    if (++b->count > kMaxElements) return b->stop("more than 10000 elements");
    if (b->open.size() >= kMaxDepth) return b->stop("nested more than 32 deep");
    Element e;
    std::string_view q = qname;
    if (auto sep = q.find(kSep); sep != std::string_view::npos) {
        e.ns = q.substr(0, sep);
        e.name = q.substr(sep + 1);
    } else {
        e.name = q;
    }
    e.line = int(b->x->XML_GetCurrentLineNumber(b->parser));
    if (b->open.empty()) {
        b->root = std::move(e);
        b->open.push_back(&b->root);
    } else {
        auto& kids = b->open.back()->children;
        kids.push_back(std::move(e));
        b->open.push_back(&kids.back());
    }
}

void on_start(void* data, const XML_Char* qname, const XML_Char**) {
    guarded(data, [&](Builder* b) { start(b, qname); });
}

void on_end(void* data, const XML_Char*) {
    guarded(data, [](Builder* b) {
        if (!b->open.empty()) b->open.pop_back();
    });
}

void on_text(void* data, const XML_Char* s, int len) {
    guarded(data, [&](Builder* b) {
        if (!b->open.empty()) b->open.back()->text.append(s, size_t(len));
    });
}

void on_doctype(void* data, const XML_Char*, const XML_Char*, const XML_Char*, int) {
    guarded(data, [](Builder* b) { b->stop("a DOCTYPE is not accepted"); });
}

}  // namespace

std::vector<const Element*> Element::all(std::string_view n, std::string_view uri) const {
    std::vector<const Element*> out;
    for (const auto& c : children)
        if (c.name == n && c.ns == uri) out.push_back(&c);
    return out;
}

const Element* Element::find(std::initializer_list<std::string_view> path,
                             std::string_view uri) const {
    const Element* at = this;
    for (auto n : path) {
        const auto it = std::ranges::find_if(
            at->children, [&](const Element& c) { return c.name == n && c.ns == uri; });
        if (it == at->children.end()) return nullptr;
        at = &*it;
    }
    return at;
}

Result<Element> parse(std::string_view text, std::string_view what) {
    if (text.size() > kMaxDocument)
        return fail(Errc::invalid_argument, "{}: larger than {} KiB", what, kMaxDocument >> 10);
    const Expat* x = BALLAST_TRY(expat());
    Builder b;
    b.x = x;
    b.parser = x->XML_ParserCreateNS(nullptr, kSep);
    if (!b.parser) return fail(Errc::failed, "{}: cannot create an XML parser", what);
    x->XML_SetUserData(b.parser, &b);
    x->XML_SetElementHandler(b.parser, on_start, on_end);
    x->XML_SetCharacterDataHandler(b.parser, on_text);
    x->XML_SetStartDoctypeDeclHandler(b.parser, on_doctype);
    const auto status = x->XML_Parse(b.parser, text.data(), int(text.size()), XML_TRUE);
    const int line = int(x->XML_GetCurrentLineNumber(b.parser));
    std::string why = b.refused;
    if (why.empty() && status != XML_STATUS_OK) {
        // XML_ErrorString() is null for codes it does not know.
        const XML_LChar* s = x->XML_ErrorString(x->XML_GetErrorCode(b.parser));
        why = s ? s : "not well-formed";
    }
    if (!why.empty()) return fail(Errc::parse, "{}:{}: {}", what, line, why);
    return std::move(b.root);
}

std::string escape(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        switch (c) {
            case '&':
                out += "&amp;";
                break;
            case '<':
                out += "&lt;";
                break;
            case '>':
                out += "&gt;";
                break;
            case '"':
                out += "&quot;";
                break;
            case '\'':
                out += "&apos;";
                break;
            default:
                // XML 1.0 cannot carry the control characters but tab, LF and CR at all.
                if (static_cast<unsigned char>(c) >= 0x20 || c == '\t' || c == '\n' || c == '\r')
                    out += c;
        }
    }
    return out;
}

}  // namespace ballast::xml
