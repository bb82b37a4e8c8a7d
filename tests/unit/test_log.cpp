#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <algorithm>

#include "ballast/core/log.hpp"

using namespace ballast;

TEST_CASE("log levels parse and name", "[core][log]") {
    CHECK(log::parse_level("debug").value() == spdlog::level::debug);
    CHECK(log::parse_level("warning").value() == spdlog::level::warn);
    CHECK(log::parse_level("warn").value() == spdlog::level::warn);
    CHECK_FALSE(log::parse_level("loud"));
    CHECK(log::level_name(spdlog::level::warn) == "warning");
    CHECK(log::syslog_priority(spdlog::level::err) == 3);
    CHECK(log::syslog_priority(spdlog::level::debug) == 7);
}

TEST_CASE("journal records carry structured fields", "[core][log]") {
    log::RecordInfo rec{"ballast-agent", spdlog::level::warn, "slot B failed", "upgrade.cpp", 42,
                        "activate"};
    auto f = log::journal_fields(rec);
    auto has = [&](const std::string& s) { return std::find(f.begin(), f.end(), s) != f.end(); };
    CHECK(has("MESSAGE=slot B failed"));
    CHECK(has("PRIORITY=4"));
    CHECK(has("SYSLOG_IDENTIFIER=ballast-agent"));
    CHECK(has("CODE_FILE=upgrade.cpp"));
    CHECK(has("CODE_LINE=42"));
    CHECK(has("CODE_FUNC=activate"));
    {
        log::ScopedField job("BALLAST_JOB", "upgrade");
        auto g = log::journal_fields(rec);
        CHECK(std::find(g.begin(), g.end(), "BALLAST_JOB=upgrade") != g.end());
    }
    auto h = log::journal_fields(rec);
    CHECK(std::find(h.begin(), h.end(), "BALLAST_JOB=upgrade") == h.end());
}

TEST_CASE("JOURNAL_STREAM must name our stderr", "[core][log]") {
    struct stat st {};
    REQUIRE(::fstat(2, &st) == 0);
    ::setenv("JOURNAL_STREAM", fmt::format("{}:{}", st.st_dev, st.st_ino).c_str(), 1);
    CHECK(log::stderr_is_journal());
    // Inherited by a child whose stderr was redirected elsewhere: not the journal.
    ::setenv("JOURNAL_STREAM", fmt::format("{}:{}", st.st_dev, st.st_ino + 1).c_str(), 1);
    CHECK_FALSE(log::stderr_is_journal());
    ::setenv("JOURNAL_STREAM", "garbage", 1);
    CHECK_FALSE(log::stderr_is_journal());
    ::unsetenv("JOURNAL_STREAM");
    CHECK_FALSE(log::stderr_is_journal());
}
