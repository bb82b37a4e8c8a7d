#include "ballast/config/template.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <memory>
#include <optional>
#include <vector>

#include "ballast/core/encoding.hpp"
#include "ballast/core/json.hpp"

namespace ballast::config {
namespace {

using nlohmann::json;

// A value during evaluation: a JSON value, or a field that does not exist.
struct Value {
    json v;
    bool missing = false;
    std::string missing_field;
};

struct Token {
    enum Kind { field, ident, string, number, pipe, lparen, rparen, end } kind;
    std::string text;
};

// Errors inside one action; the caller adds the position.
struct EvalError {
    std::string message;
};

class Lexer {
  public:
    explicit Lexer(std::string_view s) : s_(s) {}
    std::vector<Token> tokens(std::string& err) {
        std::vector<Token> out;
        while (true) {
            while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_])))
                ++i_;
            if (i_ >= s_.size()) break;
            char c = s_[i_];
            if (c == '|')
                out.push_back({Token::pipe, "|"}), ++i_;
            else if (c == '(')
                out.push_back({Token::lparen, "("}), ++i_;
            else if (c == ')')
                out.push_back({Token::rparen, ")"}), ++i_;
            else if (c == '"') {
                std::string v;
                ++i_;
                bool closed = false;
                while (i_ < s_.size()) {
                    char d = s_[i_++];
                    if (d == '"') {
                        closed = true;
                        break;
                    }
                    if (d == '\\' && i_ < s_.size()) {
                        char e = s_[i_++];
                        v += e == 'n' ? '\n' : e == 't' ? '\t' : e;
                    } else {
                        v += d;
                    }
                }
                if (!closed) {
                    err = "unterminated string";
                    return {};
                }
                out.push_back({Token::string, v});
            } else if (c == '`') {
                size_t j = s_.find('`', i_ + 1);
                if (j == std::string_view::npos) {
                    err = "unterminated raw string";
                    return {};
                }
                out.push_back({Token::string, std::string(s_.substr(i_ + 1, j - i_ - 1))});
                i_ = j + 1;
            } else if (c == '.') {
                size_t j = i_ + 1;
                while (j < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[j])) ||
                                         s_[j] == '_' || s_[j] == '.'))
                    ++j;
                out.push_back({Token::field, std::string(s_.substr(i_, j - i_))});
                i_ = j;
            } else if (std::isdigit(static_cast<unsigned char>(c)) ||
                       (c == '-' && i_ + 1 < s_.size() &&
                        std::isdigit(static_cast<unsigned char>(s_[i_ + 1])))) {
                size_t j = i_ + 1;
                while (j < s_.size() && std::isdigit(static_cast<unsigned char>(s_[j])))
                    ++j;
                out.push_back({Token::number, std::string(s_.substr(i_, j - i_))});
                i_ = j;
            } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
                size_t j = i_;
                while (j < s_.size() &&
                       (std::isalnum(static_cast<unsigned char>(s_[j])) || s_[j] == '_'))
                    ++j;
                out.push_back({Token::ident, std::string(s_.substr(i_, j - i_))});
                i_ = j;
            } else {
                err = fmt::format("unexpected character '{}'", c);
                return {};
            }
        }
        out.push_back({Token::end, ""});
        return out;
    }

  private:
    std::string_view s_;
    size_t i_ = 0;
};

std::string to_text(const json& v) {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_null()) return "";
    if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
    return json_text(v);
}

bool truthy(const Value& v) {
    if (v.missing) return false;
    const json& j = v.v;
    if (j.is_null()) return false;
    if (j.is_boolean()) return j.get<bool>();
    if (j.is_string()) return !j.get_ref<const std::string&>().empty();
    if (j.is_number()) return j.get<double>() != 0;
    return !j.empty();
}

// The template functions (Sprig's, as Kairos configs use them), one entry per name.
using Args = std::vector<Value>;

std::optional<Value> fail_with(EvalError& err, std::string message) {
    err.message = std::move(message);
    return std::nullopt;
}

std::optional<Value> string_value(std::string s) {
    return Value{json(std::move(s))};
}

bool ends_with(const std::string& s, const std::string& x) {
    return s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
}

std::optional<Value> fn_default(Args& a, EvalError& err) {
    // Only the value defaulted from may be missing, not the default itself.
    if (a[0].missing)
        return fail_with(err, fmt::format("no field {} in the node facts", a[0].missing_field));
    return truthy(a[1]) ? Value{a[1].v} : Value{a[0].v};
}

std::optional<Value> fn_trunc(Args& a, EvalError& err) {
    if (!a[0].v.is_number_integer()) return fail_with(err, "trunc: the length must be a number");
    long long n = a[0].v.get<long long>();
    std::string str = to_text(a[1].v);
    if (n >= 0) return string_value(str.substr(0, std::min<size_t>(str.size(), size_t(n))));
    // -(n + 1) + 1: negating LLONG_MIN itself would overflow.
    size_t k = std::min<size_t>(str.size(), size_t(-(n + 1)) + 1);
    return string_value(str.substr(str.size() - k));
}

template <int (*Map)(int)>
std::optional<Value> fn_map_chars(Args& a, EvalError&) {
    std::string str = to_text(a[0].v);
    for (auto& c : str)
        c = char(Map(static_cast<unsigned char>(c)));
    return string_value(std::move(str));
}

int to_upper(int c) {
    return std::toupper(c);
}
int to_lower(int c) {
    return std::tolower(c);
}

std::optional<Value> fn_title(Args& a, EvalError&) {
    std::string str = to_text(a[0].v);
    bool start = true;
    for (auto& c : str) {
        if (start && std::isalpha(static_cast<unsigned char>(c)))
            c = char(std::toupper(static_cast<unsigned char>(c)));
        start = std::isspace(static_cast<unsigned char>(c));
    }
    return string_value(std::move(str));
}

std::optional<Value> fn_trim(Args& a, EvalError&) {
    std::string str = to_text(a[0].v);
    auto b = str.find_first_not_of(" \t\r\n");
    auto e = str.find_last_not_of(" \t\r\n");
    return string_value(b == std::string::npos ? "" : str.substr(b, e - b + 1));
}

std::optional<Value> fn_quote(Args& a, EvalError&) {
    std::string q = "\"";
    for (char c : to_text(a[0].v)) {
        if (c == '"' || c == '\\') q += '\\';
        if (c == '\n') {
            q += "\\n";
            continue;
        }
        q += c;
    }
    return string_value(q + "\"");
}

std::optional<Value> fn_squote(Args& a, EvalError&) {
    return string_value("'" + to_text(a[0].v) + "'");
}

std::optional<Value> fn_b64enc(Args& a, EvalError&) {
    return string_value(base64_encode(to_text(a[0].v)));
}

std::optional<Value> fn_b64dec(Args& a, EvalError& err) {
    auto dec = base64_decode(to_text(a[0].v));
    if (!dec) return fail_with(err, "b64dec: " + dec.error().message());
    return string_value(std::move(*dec));
}

std::optional<Value> fn_to_string(Args& a, EvalError&) {
    return string_value(to_text(a[0].v));
}

std::optional<Value> fn_replace(Args& a, EvalError&) {
    std::string from = to_text(a[0].v), to = to_text(a[1].v), str = to_text(a[2].v);
    if (from.empty()) return string_value(std::move(str));
    std::string out;
    size_t i = 0, j;
    while ((j = str.find(from, i)) != std::string::npos) {
        out += str.substr(i, j - i) + to;
        i = j + from.size();
    }
    return string_value(out + str.substr(i));
}

std::optional<Value> fn_trim_prefix(Args& a, EvalError&) {
    std::string x = to_text(a[0].v), str = to_text(a[1].v);
    return string_value(str.rfind(x, 0) == 0 ? str.substr(x.size()) : str);
}

std::optional<Value> fn_trim_suffix(Args& a, EvalError&) {
    std::string x = to_text(a[0].v), str = to_text(a[1].v);
    return string_value(ends_with(str, x) ? str.substr(0, str.size() - x.size()) : str);
}

std::optional<Value> fn_contains(Args& a, EvalError&) {
    return Value{json(to_text(a[1].v).find(to_text(a[0].v)) != std::string::npos)};
}

std::optional<Value> fn_has_prefix(Args& a, EvalError&) {
    return Value{json(to_text(a[1].v).rfind(to_text(a[0].v), 0) == 0)};
}

std::optional<Value> fn_has_suffix(Args& a, EvalError&) {
    return Value{json(ends_with(to_text(a[1].v), to_text(a[0].v)))};
}

std::optional<Value> fn_join(Args& a, EvalError& err) {
    if (!a[1].v.is_array()) return fail_with(err, "join: the second argument must be a list");
    std::string out;
    for (size_t i = 0; i < a[1].v.size(); ++i)
        out += (i ? to_text(a[0].v) : "") + to_text(a[1].v[i]);
    return string_value(std::move(out));
}

std::optional<Value> fn_index(Args& a, EvalError& err) {
    if (a.size() < 2) return fail_with(err, "index: expects a collection and at least one key");
    json cur = a[0].v;
    for (size_t i = 1; i < a.size(); ++i) {
        if (cur.is_array() && a[i].v.is_number_integer()) {
            auto k = a[i].v.get<long long>();
            if (k < 0 || size_t(k) >= cur.size())
                return fail_with(err, fmt::format("index: {} is out of range", k));
            cur = cur[size_t(k)];
        } else if (cur.is_object() && a[i].v.is_string()) {
            auto k = a[i].v.get<std::string>();
            if (!cur.contains(k)) return fail_with(err, fmt::format("index: no key '{}'", k));
            cur = cur[k];
        } else {
            return fail_with(err, "index: cannot index this value");
        }
    }
    return Value{cur};
}

struct Function {
    std::string_view name;
    int args;         // how many; -1: the function checks (index takes a key path)
    bool missing_ok;  // a missing field may be an argument (default's first)
    std::optional<Value> (*call)(Args&, EvalError&);
};

constexpr Function kFunctions[] = {
    {"default", 2, true, &fn_default},
    {"trunc", 2, false, &fn_trunc},
    {"upper", 1, false, &fn_map_chars<&to_upper>},
    {"lower", 1, false, &fn_map_chars<&to_lower>},
    {"title", 1, false, &fn_title},
    {"trim", 1, false, &fn_trim},
    {"quote", 1, false, &fn_quote},
    {"squote", 1, false, &fn_squote},
    {"b64enc", 1, false, &fn_b64enc},
    {"b64dec", 1, false, &fn_b64dec},
    {"toString", 1, false, &fn_to_string},
    {"replace", 3, false, &fn_replace},
    {"trimPrefix", 2, false, &fn_trim_prefix},
    {"trimSuffix", 2, false, &fn_trim_suffix},
    {"contains", 2, false, &fn_contains},
    {"hasPrefix", 2, false, &fn_has_prefix},
    {"hasSuffix", 2, false, &fn_has_suffix},
    {"join", 2, false, &fn_join},
    {"index", -1, false, &fn_index},
};

std::optional<Value> call_function(const std::string& name, Args& a, EvalError& err) {
    const auto* f = std::find_if(std::begin(kFunctions), std::end(kFunctions),
                                 [&](const Function& x) { return x.name == name; });
    const bool known = f != std::end(kFunctions);
    // Values other than `default`'s fallback must exist.
    if (!known || !f->missing_ok)
        for (const auto& v : a)
            if (v.missing)
                return fail_with(err,
                                 fmt::format("no field {} in the node facts", v.missing_field));
    if (!known) return fail_with(err, fmt::format("unknown function '{}'", name));
    if (f->args >= 0 && a.size() != size_t(f->args))
        return fail_with(err, fmt::format("{}: expects {} argument{}, got {}", name, f->args,
                                          f->args == 1 ? "" : "s", a.size()));
    return f->call(a, err);
}

class Evaluator {
  public:
    Evaluator(const std::vector<Token>& t, const json& data) : t_(t), data_(data) {}

    std::optional<Value> run(EvalError& err) {
        auto v = pipeline(err);
        if (!v) return std::nullopt;
        if (t_[p_].kind != Token::end) {
            err.message = fmt::format("unexpected '{}'", t_[p_].text);
            return std::nullopt;
        }
        return v;
    }

  private:
    std::optional<Value> pipeline(EvalError& err) {
        auto v = command(nullptr, err);
        while (v && t_[p_].kind == Token::pipe) {
            ++p_;
            v = command(&*v, err);
        }
        return v;
    }

    std::optional<Value> operand(EvalError& err) {
        const Token& t = t_[p_];
        switch (t.kind) {
            case Token::string:
                ++p_;
                return Value{json(t.text)};
            case Token::number: {
                ++p_;
                long long n = 0;
                auto [end, ec] = std::from_chars(t.text.data(), t.text.data() + t.text.size(), n);
                if (ec != std::errc() || end != t.text.data() + t.text.size()) {
                    err.message = fmt::format("number {} is out of range", t.text);
                    return std::nullopt;
                }
                return Value{json(n)};
            }
            case Token::field:
                ++p_;
                return field(t.text, err);
            case Token::lparen: {
                // Nesting is bounded: a hostile file must not exhaust the stack.
                if (++depth_ > kMaxDepth) {
                    err.message = "expressions nested too deeply";
                    return std::nullopt;
                }
                ++p_;
                auto v = pipeline(err);
                --depth_;
                if (!v) return std::nullopt;
                if (t_[p_].kind != Token::rparen) {
                    err.message = "missing ')'";
                    return std::nullopt;
                }
                ++p_;
                // (index .Values.network 0).macaddress
                if (t_[p_].kind == Token::field && t_[p_].text != "." && !v->missing)
                    return field_of(v->v, t_[p_++].text, "(...)");
                return v;
            }
            case Token::ident:
                if (t.text == "true" || t.text == "false") {
                    ++p_;
                    return Value{json(t.text == "true")};
                }
                if (t.text == "nil") {
                    ++p_;
                    return Value{json(nullptr)};
                }
                err.message =
                    fmt::format("function '{}' used as a value (wrap it in parentheses)", t.text);
                return std::nullopt;
            default:
                err.message = fmt::format("unexpected '{}'", t.text);
                return std::nullopt;
        }
    }

    std::optional<Value> field(const std::string& path, EvalError&) {
        if (path == ".") return Value{data_};
        return field_of(data_, path, "");
    }

    static Value field_of(const json& root, const std::string& path, std::string walked) {
        const json* cur = &root;
        size_t i = 1;
        while (i <= path.size()) {
            size_t j = path.find('.', i);
            if (j == std::string::npos) j = path.size();
            std::string name = path.substr(i, j - i);
            walked += "." + name;
            if (name.empty() || !cur->is_object() || !cur->contains(name))
                return Value{json(nullptr), true, walked};
            cur = &(*cur)[name];
            i = j + 1;
        }
        return Value{*cur};
    }

    static bool is_arg_start(const Token& t) {
        return t.kind == Token::string || t.kind == Token::number || t.kind == Token::field ||
               t.kind == Token::lparen ||
               (t.kind == Token::ident &&
                (t.text == "true" || t.text == "false" || t.text == "nil"));
    }

    std::optional<Value> command(const Value* piped, EvalError& err) {
        if (t_[p_].kind == Token::ident && t_[p_].text != "true" && t_[p_].text != "false" &&
            t_[p_].text != "nil") {
            std::string fn = t_[p_++].text;
            std::vector<Value> args;
            while (is_arg_start(t_[p_])) {
                auto a = operand(err);
                if (!a) return std::nullopt;
                args.push_back(std::move(*a));
            }
            if (piped) args.push_back(*piped);
            return call_function(fn, args, err);
        }
        if (piped) {
            err.message = "a pipeline stage must be a function call";
            return std::nullopt;
        }
        auto v = operand(err);
        if (v && is_arg_start(t_[p_])) {
            err.message = "unexpected argument after a value";
            return std::nullopt;
        }
        return v;
    }

    static constexpr int kMaxDepth = 64;
    const std::vector<Token>& t_;
    const json& data_;
    size_t p_ = 0;
    int depth_ = 0;
};

// The document: text and actions, with if/else blocks.
struct Item {
    enum Kind { text, action, if_block } kind;
    std::string body;   // text, or the action's expression
    size_t offset = 0;  // in the source, for error positions
    // if_block: conditions with their bodies; an empty condition is the else branch.
    std::vector<std::pair<std::string, std::vector<Item>>> branches;
    std::vector<size_t> branch_offsets;
};

struct RawAction {
    std::string expr;
    size_t start, end;  // [start, end) of "{{ ... }}" in the source
    bool trim_left, trim_right;
};

std::optional<RawAction> next_action(std::string_view s, size_t from, std::string& err) {
    size_t a = s.find("{{", from);
    if (a == std::string_view::npos) return std::nullopt;
    size_t b = s.find("}}", a + 2);
    if (b == std::string_view::npos) {
        err = "unclosed action '{{'";
        return RawAction{"", a, s.size(), false, false};
    }
    std::string_view inner = s.substr(a + 2, b - a - 2);
    bool tl =
        inner.size() >= 2 && inner[0] == '-' && std::isspace(static_cast<unsigned char>(inner[1]));
    bool tr = inner.size() >= 2 && inner.back() == '-' &&
              std::isspace(static_cast<unsigned char>(inner[inner.size() - 2]));
    if (tl) inner.remove_prefix(1);
    if (tr) inner.remove_suffix(1);
    std::string expr(inner);
    auto first = expr.find_first_not_of(" \t\r\n");
    auto last = expr.find_last_not_of(" \t\r\n");
    expr = first == std::string::npos ? "" : expr.substr(first, last - first + 1);
    return RawAction{expr, a, b + 2, tl, tr};
}

class Renderer {
  public:
    Renderer(std::string_view src, const json& data, const Position& where)
        : src_(src), data_(data), where_(where) {}

    Result<std::string> render() {
        std::vector<Item> items;
        size_t pos = 0;
        std::string end_kw;
        BALLAST_TRY(parse(pos, items, end_kw, 0));
        if (!end_kw.empty()) return error_at(pos, fmt::format("unexpected {{{{ {} }}}}", end_kw));
        std::string out;
        BALLAST_TRY(eval(items, out));
        return out;
    }

  private:
    std::unexpected<Error> error_at(size_t offset, const std::string& msg) const {
        int line = where_.line;
        for (size_t i = 0; i < offset && i < src_.size(); ++i)
            if (src_[i] == '\n') ++line;
        Position p{where_.file, line, 0};
        return fail(Errc::invalid_argument, "{}: template: {}", to_string(p), msg);
    }

    // Parses until the end or an else/end keyword (returned in `stopped_at`).
    Status parse(size_t& pos, std::vector<Item>& items, std::string& stopped_at, int depth) {
        if (depth > 64) return error_at(pos, "'if' blocks nested too deeply");
        stopped_at.clear();
        bool trim_next_text = false;
        while (pos <= src_.size()) {
            std::string err;
            auto act = next_action(src_, pos, err);
            size_t text_end = act ? act->start : src_.size();
            std::string text(src_.substr(pos, text_end - pos));
            if (trim_next_text) {
                auto f = text.find_first_not_of(" \t\r\n");
                text = f == std::string::npos ? "" : text.substr(f);
            }
            if (act && act->trim_left) {
                auto l = text.find_last_not_of(" \t\r\n");
                text = l == std::string::npos ? "" : text.substr(0, l + 1);
            }
            if (!text.empty()) items.push_back({Item::text, text, pos, {}, {}});
            if (!act) {
                pos = src_.size() + 1;
                return {};
            }
            if (!err.empty()) return error_at(act->start, err);
            pos = act->end;
            trim_next_text = act->trim_right;
            const std::string& e = act->expr;
            if (e.rfind("/*", 0) == 0) continue;  // comment
            auto kw = e.substr(0, e.find_first_of(" \t"));
            if (kw == "end" || kw == "else") {
                if (depth == 0) return error_at(act->start, fmt::format("'{}' without 'if'", kw));
                stopped_at = e;
                last_kw_offset_ = act->start;
                return {};
            }
            if (kw == "if") {
                Item blk{Item::if_block, "", act->start, {}, {}};
                std::string cond = e.substr(2);
                size_t cond_offset = act->start;
                bool had_else = false;
                for (;;) {
                    std::vector<Item> body;
                    std::string stop;
                    BALLAST_TRY(parse(pos, body, stop, depth + 1));
                    blk.branches.push_back({cond, std::move(body)});
                    blk.branch_offsets.push_back(cond_offset);
                    if (stop.empty()) return error_at(blk.offset, "'if' without 'end'");
                    if (stop == "end") break;
                    if (had_else) return error_at(last_kw_offset_, "'else' after 'else'");
                    // "else" or "else if COND"
                    cond_offset = last_kw_offset_;
                    std::string rest = stop.substr(4);
                    auto f = rest.find_first_not_of(" \t");
                    rest = f == std::string::npos ? "" : rest.substr(f);
                    if (rest.empty()) {
                        cond.clear();
                        had_else = true;
                    } else if (rest.rfind("if", 0) == 0 && rest.size() > 2 &&
                               std::isspace(static_cast<unsigned char>(rest[2]))) {
                        cond = rest.substr(2);
                    } else {
                        return error_at(cond_offset, "expected 'else' or 'else if'");
                    }
                }
                items.push_back(std::move(blk));
                continue;
            }
            if (kw == "range" || kw == "with" || kw == "define" || kw == "template" ||
                kw == "block")
                return error_at(act->start, fmt::format("'{}' is not supported", kw));
            items.push_back({Item::action, e, act->start, {}, {}});
        }
        return {};
    }

    Result<Value> evaluate(const std::string& expr, size_t offset) const {
        std::string lex_err;
        auto toks = Lexer(expr).tokens(lex_err);
        if (!lex_err.empty()) return error_at(offset, lex_err);
        if (toks.size() == 1) return error_at(offset, "empty action");
        EvalError err;
        Evaluator ev(toks, data_);
        auto v = ev.run(err);
        if (!v) return error_at(offset, err.message);
        if (v->missing)
            return error_at(offset, fmt::format("no field {} in the node facts", v->missing_field));
        return *v;
    }

    Status eval(const std::vector<Item>& items, std::string& out) const {
        for (const auto& it : items) {
            if (it.kind == Item::text) {
                out += it.body;
            } else if (it.kind == Item::action) {
                auto v = BALLAST_TRY(evaluate(it.body, it.offset));
                out += to_text(v.v);
            } else {
                for (size_t b = 0; b < it.branches.size(); ++b) {
                    const auto& [cond, body] = it.branches[b];
                    bool take = true;
                    if (!cond.empty() || b == 0) {
                        auto v = BALLAST_TRY(evaluate(cond, it.branch_offsets[b]));
                        take = truthy(v);
                    }
                    if (take) {
                        BALLAST_TRY(eval(body, out));
                        break;
                    }
                }
            }
        }
        return {};
    }

    std::string_view src_;
    const json& data_;
    Position where_;
    size_t last_kw_offset_ = 0;
};

}  // namespace

bool has_template(std::string_view text) {
    return text.find("{{") != std::string_view::npos;
}

Result<std::string> render_template(std::string_view text, const nlohmann::json& data,
                                    const Position& where) {
    if (!has_template(text)) return std::string(text);
    return Renderer(text, data, where).render();
}

}  // namespace ballast::config
