#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "ballast/core/process.hpp"
#include "helpers.hpp"

using namespace ballast;
using namespace std::chrono_literals;

TEST_CASE("argv is passed verbatim, never through a shell", "[core][process]") {
    ProcessOptions o;
    o.argv = {"printf", "%s|", "a b", "$(id)", ";", "*"};
    auto r = run_process(o);
    REQUIRE(r);
    CHECK(r->success());
    CHECK(r->out == "a b|$(id)|;|*|");
}

TEST_CASE("exit status and both streams are captured", "[core][process]") {
    auto o = shell_command("echo out; echo err >&2; exit 3");
    auto r = run_process(o);
    REQUIRE(r);
    CHECK_FALSE(r->success());
    CHECK(r->exit_code == 3);
    CHECK(r->signal == 0);
    CHECK(r->out == "out\n");
    CHECK(r->err == "err\n");
    CHECK(r->describe() == "exited with status 3");
}

TEST_CASE("a missing program is an error, not a run", "[core][process]") {
    ProcessOptions o;
    o.argv = {"/nonexistent/ballast-no-such-tool"};
    auto r = run_process(o);
    REQUIRE_FALSE(r);
    CHECK(r.error().code() == Errc::not_found);
    CHECK(r.error().what().find("/nonexistent/ballast-no-such-tool") != std::string::npos);

    ProcessOptions empty;
    CHECK_FALSE(run_process(empty));
}

TEST_CASE("environment: added, replaced, cleared", "[core][process]") {
    ::setenv("BALLAST_TEST_INHERITED", "yes", 1);
    auto o = shell_command("echo \"$BALLAST_TEST_INHERITED-$BALLAST_TEST_ADDED\"");
    o.env = {"BALLAST_TEST_ADDED=1"};
    CHECK(run_process(o)->out == "yes-1\n");

    o.env = {"BALLAST_TEST_INHERITED=replaced"};
    CHECK(run_process(o)->out == "replaced-\n");

    o.clear_env = true;
    o.env = {"PATH=/usr/bin:/bin"};
    CHECK(run_process(o)->out == "-\n");
}

TEST_CASE("stdin input and working directory", "[core][process]") {
    ProcessOptions o;
    o.argv = {"cat"};
    o.input = std::string(200000, 'z');  // larger than a pipe buffer
    auto r = run_process(o);
    REQUIRE(r);
    CHECK(r->out.size() == 200000);

    test::TempDir t;
    auto pwd = shell_command("pwd");
    pwd.cwd = t.path().string();
    CHECK(run_process(pwd)->out == t.path().string() + "\n");
}

TEST_CASE("output lines are streamed as they arrive", "[core][process]") {
    auto o = shell_command("printf 'one\\ntwo\\n'; printf 'oops\\n' >&2; printf tail");
    std::vector<std::string> seen;
    o.on_line = [&](std::string_view line, bool is_err) {
        seen.push_back(std::string(is_err ? "E:" : "O:") + std::string(line));
    };
    REQUIRE(run_process(o));
    CHECK(std::count(seen.begin(), seen.end(), "O:one") == 1);
    CHECK(std::count(seen.begin(), seen.end(), "O:two") == 1);
    CHECK(std::count(seen.begin(), seen.end(), "E:oops") == 1);
    CHECK(std::count(seen.begin(), seen.end(), "O:tail") == 1);
}

TEST_CASE("capture is bounded", "[core][process]") {
    auto o = shell_command("head -c 100000 /dev/zero");
    o.max_capture = 1000;
    auto r = run_process(o);
    REQUIRE(r);
    CHECK(r->success());
    CHECK(r->out.size() == 1000);
}

TEST_CASE("a timeout kills the whole process group", "[core][process]") {
    // Become the reaper of orphaned grandchildren so their fate can be checked exactly.
    REQUIRE(::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
    auto o = shell_command("sleep 30 & echo $!; wait");
    o.timeout = 300ms;
    o.kill_grace = 5s;
    auto r = run_process(o);
    REQUIRE(r);
    CHECK(r->timed_out);
    CHECK_FALSE(r->success());
    CHECK(r->describe() == "timed out and was killed");
    pid_t grandchild = std::stoi(r->out);
    int status = 0;
    REQUIRE(::waitpid(grandchild, &status, 0) == grandchild);
    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGTERM);
    ::prctl(PR_SET_CHILD_SUBREAPER, 0);
}

TEST_CASE("a program ignoring SIGTERM is killed after the grace period", "[core][process]") {
    auto o = shell_command("trap '' TERM; while :; do sleep 0.05; done");
    o.timeout = 200ms;
    o.kill_grace = 200ms;
    auto r = run_process(o);
    REQUIRE(r);
    CHECK(r->timed_out);
    CHECK(r->signal == SIGKILL);
}

TEST_CASE("the child starts with default signal handling", "[core][process]") {
    // The daemon blocks SIGTERM for sd-event and ignores SIGPIPE; children must not inherit that.
    sigset_t ss, old;
    sigemptyset(&ss);
    sigaddset(&ss, SIGTERM);
    ::sigprocmask(SIG_BLOCK, &ss, &old);
    auto prev = ::signal(SIGPIPE, SIG_IGN);
    auto r = run_process(shell_command("grep -E '^(SigBlk|SigIgn)' /proc/self/status"));
    ::sigprocmask(SIG_SETMASK, &old, nullptr);
    ::signal(SIGPIPE, prev);
    REQUIRE(r);
    INFO(r->out);
    // Standard signals only (1..31); glibc keeps its internal real-time signals to itself.
    auto mask = [&](const std::string& key) {
        auto at = r->out.find(key + ":\t");
        REQUIRE(at != std::string::npos);
        return std::stoull(r->out.substr(at + key.size() + 2, 16), nullptr, 16) & 0x7fffffffULL;
    };
    CHECK(mask("SigBlk") == 0);
    CHECK(mask("SigIgn") == 0);
}
