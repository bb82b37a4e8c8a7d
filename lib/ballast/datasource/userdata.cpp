#include "ballast/datasource/userdata.hpp"

#include <algorithm>
#include <cctype>
#include <optional>

#include <fmt/format.h>

#include "ballast/core/encoding.hpp"
#include "ballast/core/text.hpp"

namespace ballast::datasource {
namespace {

constexpr int kMaxDepth = 4;

bool is_gzip(std::string_view s) {
    return s.size() >= 2 && static_cast<unsigned char>(s[0]) == 0x1f &&
           static_cast<unsigned char>(s[1]) == 0x8b;
}

// What a document is by its first bytes, as cloud-init's starts-with table says; "" when
// nothing matches.
std::string type_by_start(std::string_view text) {
    struct Start {
        std::string_view prefix, type;
    };
    // Longer prefixes first: "#cloud-config-archive" is not a cloud-config.
    constexpr Start kStarts[] = {
        {"#cloud-config-archive", "text/cloud-config-archive"},
        {"#cloud-config-jsonp", "text/cloud-config-jsonp"},
        {"#cloud-config", "text/cloud-config"},
        {"#kairos-config", "text/cloud-config"},
        {"#node-config", "text/cloud-config"},
        {"#cloud-boothook", "text/cloud-boothook"},
        {"#include-once", "text/x-include-once-url"},
        {"#include", "text/x-include-url"},
        {"#part-handler", "text/part-handler"},
        {"#upstart-job", "text/upstart-job"},
        {"## template: jinja", "text/jinja2"},
        {"#!", "text/x-shellscript"},
    };
    for (const auto& s : kStarts)
        if (text.starts_with(s.prefix)) return std::string(s.type);
    return "";
}

struct Headers {
    std::string content_type;  // lower case, without parameters
    std::string boundary;
    std::string transfer_encoding;  // lower case
};

// The value of parameter `name` in a Content-Type ("multipart/mixed; boundary=\"x\"").
std::string parameter(std::string_view value, std::string_view name) {
    size_t pos = 0;
    while ((pos = value.find(';', pos)) != std::string_view::npos) {
        ++pos;
        auto rest = trim(value.substr(pos));
        auto eq = rest.find('=');
        if (eq == std::string_view::npos) continue;
        if (ascii_lower(trim(rest.substr(0, eq))) != name) continue;
        auto v = trim(rest.substr(eq + 1));
        if (!v.empty() && v.front() == '"') {
            auto end = v.find('"', 1);
            return std::string(v.substr(1, end == std::string_view::npos ? end : end - 1));
        }
        return std::string(trim(v.substr(0, v.find(';'))));
    }
    return "";
}

// Splits a MIME entity into headers and body; nullopt when `text` does not start with a
// header block (RFC 5322: "Name: value" lines, folded lines, then an empty line).
std::optional<std::pair<Headers, std::string_view>> split_entity(std::string_view text) {
    Headers h;
    std::string current;
    auto flush = [&] {
        if (current.empty()) return;
        auto colon = current.find(':');
        auto name = ascii_lower(trim(std::string_view(current).substr(0, colon)));
        auto value = trim(std::string_view(current).substr(colon + 1));
        if (name == "content-type") {
            h.content_type = ascii_lower(trim(value.substr(0, value.find(';'))));
            h.boundary = parameter(value, "boundary");
        } else if (name == "content-transfer-encoding") {
            h.transfer_encoding = ascii_lower(value);
        }
        current.clear();
    };
    size_t pos = 0;
    bool any = false;
    while (pos < text.size()) {
        auto eol = text.find('\n', pos);
        if (eol == std::string_view::npos) return std::nullopt;  // no empty line: no headers
        auto line = text.substr(pos, eol - pos);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        pos = eol + 1;
        if (line.empty()) {
            flush();
            if (!any) return std::nullopt;
            return std::pair{h, text.substr(pos)};
        }
        if (line.front() == ' ' || line.front() == '\t') {
            if (current.empty()) return std::nullopt;
            current += ' ';
            current += trim(line);
            continue;
        }
        auto colon = line.find(':');
        if (colon == std::string_view::npos || colon == 0 ||
            line.substr(0, colon).find_first_of(" \t") != std::string_view::npos)
            return std::nullopt;
        flush();
        current = std::string(line);
        any = true;
    }
    return std::nullopt;
}

// The parts between "--boundary" lines; the preamble and epilogue are dropped.
Result<std::vector<std::string_view>> split_multipart(std::string_view body,
                                                      const std::string& boundary) {
    if (boundary.empty() || boundary.size() > 200)
        return fail(Errc::invalid_argument, "a multipart without a usable boundary");
    const std::string delim = "--" + boundary;
    std::vector<std::string_view> parts;
    std::optional<size_t> start;
    size_t pos = 0;
    while (pos <= body.size()) {
        auto eol = body.find('\n', pos);
        auto line = body.substr(pos, eol == std::string_view::npos ? body.size() - pos : eol - pos);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        const size_t next = eol == std::string_view::npos ? body.size() + 1 : eol + 1;
        if (line.starts_with(delim)) {
            const auto tail = trim(line.substr(delim.size()));
            if (tail.empty() || tail == "--") {
                if (start) {
                    // The line break before the delimiter belongs to it (RFC 2046).
                    size_t end = pos;
                    if (end > *start && body[end - 1] == '\n') --end;
                    if (end > *start && body[end - 1] == '\r') --end;
                    parts.push_back(body.substr(*start, end - *start));
                    // Bounded here too: a multipart of empty parts costs nothing else.
                    if (parts.size() > kMaxParts)
                        return fail(Errc::invalid_argument, "more than {} parts", kMaxParts);
                }
                if (tail == "--") return parts;
                start = std::min(next, body.size());
            }
        }
        pos = next;
    }
    return fail(Errc::invalid_argument, "multipart: no closing boundary '--{}--'", boundary);
}

class Decoder {
  public:
    explicit Decoder(UserData& out) : out_(out) {}

    // The whole user-data, or a document gzip gave back: a MIME entity (it has a Content-Type)
    // or a plain document.
    Status entity(std::string_view text, const std::string& where, int depth) {
        BALLAST_TRY(deep(where, depth));
        auto split = split_entity(text);
        if (split && !split->first.content_type.empty())
            return mime(split->first, split->second, where, depth);
        return document(std::string(text), "", where, depth, false);
    }

  private:
    static Status deep(const std::string& where, int depth) {
        if (depth > kMaxDepth)
            return fail(Errc::invalid_argument, "{}: nested deeper than {} levels", where,
                        kMaxDepth);
        return {};
    }

    static std::string prefix(const std::string& where) {
        return where == "user-data" ? "user-data: " : where + ": ";
    }

    // One part of a multipart: headers (or none: a leading blank line), then its body.
    Status part(std::string_view text, const std::string& where, int depth) {
        BALLAST_TRY(deep(where, depth));
        for (std::string_view eol : {"\r\n", "\n"})
            if (text.starts_with(eol))
                return document(std::string(text.substr(eol.size())), "", where, depth, false);
        auto split = split_entity(text);
        if (!split) return document(std::string(text), "", where, depth, false);
        return mime(split->first, split->second, where, depth);
    }

    Status mime(const Headers& h, std::string_view raw, const std::string& where, int depth) {
        std::string body(raw);
        if (h.transfer_encoding == "base64") {
            body = BALLAST_TRY_CTX(base64_decode(body), "{}: bad base64", where);
        } else if (!h.transfer_encoding.empty() && h.transfer_encoding != "7bit" &&
                   h.transfer_encoding != "8bit" && h.transfer_encoding != "binary") {
            out_.ignored.push_back(
                fmt::format("{} (Content-Transfer-Encoding {}): not read by Ballast", where,
                            h.transfer_encoding));
            return {};
        }
        if (!h.content_type.starts_with("multipart/"))
            return document(std::move(body), h.content_type, where, depth, false);
        auto parts = BALLAST_TRY_CTX(split_multipart(body, h.boundary), "{}", where);
        parts_ += parts.size();
        if (parts_ > kMaxParts)
            return fail(Errc::invalid_argument, "{}: more than {} parts", where, kMaxParts);
        for (size_t i = 0; i < parts.size(); ++i)
            BALLAST_TRY(part(parts[i], fmt::format("{}part {}", prefix(where), i + 1), depth + 1));
        return {};
    }

    Status document(std::string body, std::string type, const std::string& where, int depth,
                    bool counted) {
        if (!counted && is_gzip(body)) {
            // Every byte gzip gives back counts against the bound, whatever it turns out to be.
            body = BALLAST_TRY_CTX(gunzip(body, kMaxUserData - std::min(total_, kMaxUserData)),
                                   "{}: gzip", where);
            BALLAST_TRY(account(body.size(), where));
            if (auto again = split_entity(body); again && !again->first.content_type.empty())
                return entity(body, where, depth + 1);
            // The compressed part's type says nothing about the content.
            return document(std::move(body), "", where, depth, true);
        }
        if (!counted) BALLAST_TRY(account(body.size(), where));
        const auto by_start = type_by_start(body);
        if (type.empty() || type == "text/plain" || type == "text/x-not-multipart" ||
            type == "application/x-gzip" || type == "application/gzip" ||
            type == "application/octet-stream")
            type = by_start;
        if (trim(body).empty()) return {};
        if (type == "text/cloud-config") {
            // A part typed cloud-config needs no header line (cloud-init's handler takes it);
            // Ballast's loader does.
            if (by_start != "text/cloud-config") body = "#cloud-config\n" + body;
            out_.configs.push_back(std::move(body));
        } else if (type == "text/x-shellscript") {
            if (!body.starts_with("#!"))
                return fail(Errc::invalid_argument,
                            "{}: a text/x-shellscript part must start with '#!'", where);
            out_.scripts.push_back(std::move(body));
        } else if (type.empty() && depth == 0) {
            // Not echoed: user-data may hold secrets.
            return fail(Errc::invalid_argument,
                        "{}: neither a cloud-config (#cloud-config) nor a script (#!) ({} bytes)",
                        where, body.size());
        } else if (type.empty()) {
            // A part of a multipart: skipped, as cloud-init does with parts it cannot type.
            out_.ignored.push_back(fmt::format(
                "{}: neither a cloud-config nor a script: not acted on by Ballast", where));
        } else {
            out_.ignored.push_back(fmt::format("{} ({}): not acted on by Ballast", where, type));
        }
        return {};
    }

    Status account(size_t n, const std::string& where) {
        total_ += n;
        if (total_ > kMaxUserData)
            return fail(Errc::invalid_argument, "{}: user-data larger than {} MiB decoded", where,
                        kMaxUserData >> 20);
        return {};
    }

    UserData& out_;
    size_t total_ = 0;
    size_t parts_ = 0;
};

}  // namespace

Result<UserData> decode_user_data(std::string_view raw) {
    if (raw.size() > kMaxUserData)
        return fail(Errc::invalid_argument, "user-data: larger than {} MiB", kMaxUserData >> 20);
    UserData out;
    Decoder d(out);
    BALLAST_TRY(d.entity(raw, "user-data", 0));
    return out;
}

}  // namespace ballast::datasource
