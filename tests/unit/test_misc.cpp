// Small pure helpers of lib/core: secrets, durations, did-you-mean, kernel command line, slots,
// numbers, JSON and XML from input.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>

#include "ballast/boot/slot.hpp"
#include "ballast/config/model.hpp"
#include "ballast/core/cmdline.hpp"
#include "ballast/core/duration.hpp"
#include "ballast/core/json.hpp"
#include "ballast/core/secret.hpp"
#include "ballast/core/suggest.hpp"
#include "ballast/core/text.hpp"
#include "ballast/core/xml.hpp"
#include "ballast/system/http.hpp"

using namespace ballast;
using namespace std::chrono_literals;

TEST_CASE("random secrets come from the kernel and differ", "[core][secret]") {
    auto a = random_secret(32), b = random_secret(32);
    REQUIRE(a);
    REQUIRE(b);
    CHECK(a->size() == 32);
    CHECK_FALSE(std::equal(a->data(), a->data() + 32, b->data()));
    CHECK_FALSE(std::all_of(a->data(), a->data() + 32, [](uint8_t c) { return c == 0; }));
    SecretBytes moved = std::move(*a);
    CHECK(moved.size() == 32);
    CHECK(a->empty());
    SecretBytes copy("key", 3);
    CHECK(std::string(reinterpret_cast<const char*>(copy.data()), copy.size()) == "key");
    CHECK(random_secret(0).value().empty());
}

TEST_CASE("durations parse as people write them", "[core][duration]") {
    CHECK(parse_duration("5m").value() == 5min);
    CHECK(parse_duration("1h30m").value() == 90min);
    CHECK(parse_duration("250ms").value() == 250ms);
    CHECK(parse_duration("300").value() == 300s);
    CHECK(parse_duration(" 2d ").value() == std::chrono::hours(48));
    CHECK_FALSE(parse_duration(""));
    CHECK_FALSE(parse_duration("5x"));
    CHECK_FALSE(parse_duration("m5"));
    CHECK_FALSE(parse_duration("5m30"));
    CHECK_FALSE(parse_duration("-5s"));
    CHECK_FALSE(parse_duration("99999999999999999999s"));
    CHECK(parse_duration("5x").error().what().find("unknown unit 'x'") != std::string::npos);
    for (std::chrono::milliseconds d : {0ms, 250ms, 1000ms, 5400000ms, 3661000ms, 172800000ms})
        CHECK(parse_duration(format_duration(d)).value() == d);
    CHECK(format_duration(90min) == "1h30m");
}

TEST_CASE("did-you-mean finds likely typos only", "[core][suggest]") {
    constexpr std::array<std::string_view, 5> keys{"sysctl", "users", "files", "hostname", "dns"};
    CHECK(closest_match("systctl", keys).value() == "sysctl");
    CHECK(closest_match("fiels", keys).value() == "files");  // transposition
    CHECK(closest_match("hostnme", keys).value() == "hostname");
    CHECK_FALSE(closest_match("kubernetes", keys));
    CHECK(edit_distance("abc", "abc") == 0);
    CHECK(edit_distance("", "abc") == 3);
}

TEST_CASE("kernel command line words", "[core][cmdline]") {
    auto words = parse_cmdline("BOOT_IMAGE=/boot/vmlinuz quiet ballast.slot=b  x=\"a b\"\n");
    REQUIRE(words.size() == 4);
    CHECK(words[1].key == "quiet");
    CHECK_FALSE(words[1].value);
    CHECK(words[3].value.value() == "a b");
    CHECK(cmdline_value("a=1 a=2", "a").value() == "2");
    CHECK_FALSE(cmdline_value("ab=1", "a"));
}

TEST_CASE("booted slot from the command line", "[boot][slot]") {
    CHECK(boot::booted_slot_from_cmdline("root=x ballast.slot=a quiet") == boot::Slot::A);
    CHECK(boot::booted_slot_from_cmdline("ballast.slot=B") == boot::Slot::B);
    CHECK_FALSE(boot::booted_slot_from_cmdline("ballast.slot=c"));
    CHECK_FALSE(boot::booted_slot_from_cmdline("quiet"));
    CHECK(boot::other(boot::Slot::A) == boot::Slot::B);
    CHECK(boot::parse_slot("x").error().what() == "invalid slot 'x' (expected A or B)");
}

TEST_CASE("URLs lose credentials and query strings in public messages", "[http][redact]") {
    using ballast::http::redact;
    CHECK(redact("https://u:p@host/a.tar: HTTP status 404") ==
          "https://***@host/a.tar: HTTP status 404");
    CHECK(redact("fetch https://h/b.tar?X-Amz-Signature=abc&e=1 failed") ==
          "fetch https://h/b.tar?*** failed");
    CHECK(redact("'https://h/x?q' and \"https://a@b/c\"") ==
          "'https://h/x?***' and \"https://***@b/c\"");
    CHECK(redact("no url here; /local/path.tar") == "no url here; /local/path.tar");
    CHECK(redact("https://h/p@q/r") == "https://h/p@q/r");  // '@' in the path is not userinfo
}

TEST_CASE("numbers from input: digits only, in range, never an exception", "[core][text]") {
    CHECK(parse_unsigned<uint32_t>("0") == 0u);
    CHECK(parse_unsigned<uint32_t>("4294967295") == 4294967295u);
    CHECK_FALSE(parse_unsigned<uint32_t>("4294967296"));
    CHECK_FALSE(parse_unsigned<uint32_t>("99999999999999999999999999"));
    CHECK_FALSE(parse_unsigned<uint32_t>(""));
    CHECK_FALSE(parse_unsigned<uint32_t>("-1"));
    CHECK_FALSE(parse_unsigned<uint32_t>("+1"));
    CHECK_FALSE(parse_unsigned<uint32_t>(" 1"));
    CHECK_FALSE(parse_unsigned<uint32_t>("1x"));
    CHECK(parse_unsigned<uint32_t>("0755", 8) == 0755u);
    CHECK_FALSE(parse_unsigned<uint32_t>("08", 8));
}

TEST_CASE("the shared input checks", "[core][text]") {
    CHECK(is_absolute_path("/dev/vda"));
    CHECK_FALSE(is_absolute_path(""));
    CHECK_FALSE(is_absolute_path("dev/vda"));
    const std::string digest(64, 'a');
    CHECK(is_sha256_hex(digest));
    CHECK(is_sha256_hex("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
    CHECK_FALSE(is_sha256_hex(std::string(64, 'A')));  // callers lower-case where they accept it
    CHECK_FALSE(is_sha256_hex(std::string(63, 'a')));
    CHECK_FALSE(is_sha256_hex(std::string(63, 'a') + "g"));
    CHECK(is_https_url("https://example.com/x"));
    CHECK_FALSE(is_https_url("http://example.com/x"));
    CHECK(is_http_url("http://example.com/x"));
    CHECK(is_http_url("https://example.com/x"));
    CHECK_FALSE(is_http_url("ftp://example.com/x"));
    CHECK_FALSE(is_http_url("HTTPS://example.com"));
    // The decoder and the users module ask the same question: plain http is a key, not a fetch.
    CHECK(config::is_remote_key("github:octocat"));
    CHECK(config::is_remote_key("gitlab:someone"));
    CHECK(config::is_remote_key("https://keys.example.com/me.keys"));
    CHECK_FALSE(config::is_remote_key("http://keys.example.com/me.keys"));
    CHECK_FALSE(config::is_remote_key("ssh-ed25519 AAAAC3Nza me@host"));
}

TEST_CASE("JSON from input: fields by type, text from any bytes", "[core][json]") {
    const auto j = nlohmann::json::parse(R"({"s": "x", "n": 5, "b": true, "o": {"s": 1}})");
    CHECK(json_field<std::string>(j, "s", "-") == "x");
    CHECK(json_field<std::string>(j, "n", "-") == "-");
    CHECK(json_field<std::string>(j, "missing", "-") == "-");
    CHECK(json_field<int64_t>(j, "n", 0) == 5);
    CHECK(json_field<int64_t>(j, "s", 7) == 7);
    CHECK(json_field<bool>(j, "b", false));
    CHECK_FALSE(json_field<bool>(j, "n", false));
    CHECK(json_field<std::string>(j["o"], "s", "-") == "-");
    CHECK(json_field<std::string>(nlohmann::json(3), "s", "-") == "-");
    CHECK(json_field<std::string>(nlohmann::json::array({1}), "s", "-") == "-");
    CHECK(json_text(nlohmann::json{{"k", std::string("caf\xe9")}}) ==
          "{\"k\":\"caf\xef\xbf\xbd\"}");
    CHECK(json_text(nlohmann::json{{"k", 1}}, 1) == "{\n \"k\": 1\n}");
    CHECK(valid_utf8("caf\xc3\xa9") == "caf\xc3\xa9");
    CHECK(valid_utf8("caf\xe9!") == "caf\xef\xbf\xbd!");
    const std::string fffd = "\xef\xbf\xbd";
    CHECK(valid_utf8(std::string("a\0b", 3)) == "a" + fffd + "b");
    CHECK(valid_utf8("\xef\xbf\xbe") == fffd);                    // U+FFFE
    CHECK(valid_utf8("\xef\xb7\x90") == fffd);                    // U+FDD0
    CHECK(valid_utf8("\xed\xa0\x80") == fffd);                    // a surrogate
    CHECK(valid_utf8("\xc0\xaf") == fffd + fffd);                 // overlong '/'
    CHECK(valid_utf8("\xf0\x9f\x98\x80") == "\xf0\x9f\x98\x80");  // U+1F600
    CHECK(valid_utf8("\xf0\x9f") == fffd + fffd);                 // cut short
    const auto n =
        nlohmann::json::parse(R"({"big": 1e300, "neg": -1, "max": 18446744073709551615})");
    CHECK(json_field<int64_t>(n, "big", 7) == 7);
    CHECK(json_field<uint64_t>(n, "neg", 7) == 7);
    CHECK(json_field<int64_t>(n, "neg", 7) == -1);
    CHECK(json_field<int64_t>(n, "max", 7) == 7);
    CHECK(json_field<uint64_t>(n, "max", 7) == 18446744073709551615u);
    CHECK(json_field<double>(n, "neg", 0.5) == -1.0);
}

TEST_CASE("XML from input: names by namespace, entities decoded, no DOCTYPE", "[core][xml]") {
    const auto doc = xml::parse(R"(<?xml version="1.0" encoding="utf-8"?>
<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1"
             xmlns:wa="http://schemas.microsoft.com/windowsazure">
  <wa:ProvisioningSection>
    <wa:Version>1.0</wa:Version>
    <Plain xmlns="">a &amp; b &#x20AC; <![CDATA[<c>]]></Plain>
  </wa:ProvisioningSection>
  <wa:ProvisioningSection/>
</Environment>)",
                                "ovf-env.xml");
    REQUIRE(doc);
    CHECK(doc->name == "Environment");
    CHECK(doc->ns == "http://schemas.dmtf.org/ovf/environment/1");
    CHECK(doc->line == 2);
    const auto sections =
        doc->all("ProvisioningSection", "http://schemas.microsoft.com/windowsazure");
    REQUIRE(sections.size() == 2);
    CHECK(sections[0]->line == 4);
    CHECK(doc->all("ProvisioningSection", "").empty());
    const auto plain = sections[0]->all("Plain", "");
    REQUIRE(plain.size() == 1);
    CHECK(plain[0]->text == "a & b \xe2\x82\xac <c>");
    CHECK(sections[0]->all("Version", "http://schemas.microsoft.com/windowsazure")[0]->text ==
          "1.0");

    // Errors name the document and the line; nothing is expanded from a DOCTYPE.
    auto err = [](std::string_view text) {
        auto r = xml::parse(text, "ovf-env.xml");
        REQUIRE_FALSE(r);
        return r.error().message();
    };
    CHECK(err("<a>\n<b>\n</a>") == "ovf-env.xml:3: mismatched tag");
    CHECK(err("") == "ovf-env.xml:1: no element found");
    CHECK(err("<a/><b/>") == "ovf-env.xml:1: junk after document element");
    CHECK(err("<a>&nope;</a>") == "ovf-env.xml:1: undefined entity");
    CHECK(err("<?xml version=\"1.0\"?>\n<!DOCTYPE l [<!ENTITY a \"aaaa\"><!ENTITY b "
              "\"&a;&a;&a;\">]>\n<l>&b;</l>") == "ovf-env.xml:2: a DOCTYPE is not accepted");
    CHECK(err("<a><b>\xff</b></a>") == "ovf-env.xml:1: not well-formed (invalid token)");

    // Bounds: depth, element count and size.
    std::string deep;
    for (int i = 0; i < 33; ++i)
        deep += "<a>";
    for (int i = 0; i < 33; ++i)
        deep += "</a>";
    CHECK(err(deep) == "ovf-env.xml:1: nested more than 32 deep");
    CHECK(xml::parse(deep.substr(3, deep.size() - 7), "x"));
    std::string wide = "<a>";
    for (int i = 0; i < 10000; ++i)
        wide += "<b/>";
    CHECK(err(wide + "</a>") == "ovf-env.xml:1: more than 10000 elements");
    CHECK(xml::escape("a<b>&\"c'") == "a&lt;b&gt;&amp;&quot;c&apos;");
    CHECK(xml::escape("a\x01\tb\nc\r\x1f\x7f\xc3\xa9") == "a\tb\nc\r\x7f\xc3\xa9");
    CHECK(err("<a>" + std::string(xml::kMaxDocument, ' ') + "</a>") ==
          "ovf-env.xml: larger than 1024 KiB");
}
