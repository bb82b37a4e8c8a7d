#include <catch2/catch.hpp>

#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <functional>

#include "ballast/core/root.hpp"
#include "helpers.hpp"

using namespace ballast;

TEST_CASE("node paths are normalised", "[core][root]") {
    CHECK(RootPrefix::normalize("/etc//ballast/./agent.yaml").value() == "/etc/ballast/agent.yaml");
    CHECK(RootPrefix::normalize("/etc/../var").value() == "/var");
    CHECK(RootPrefix::normalize("/").value() == "/");
    CHECK_FALSE(RootPrefix::normalize("etc/hostname"));
    CHECK_FALSE(RootPrefix::normalize(""));
    auto esc = RootPrefix::normalize("/etc/../../x");
    REQUIRE_FALSE(esc);
    CHECK(esc.error().what() == "/etc/../../x: climbs above the root");
}

TEST_CASE("resolve maps node paths into the root", "[core][root]") {
    RootPrefix host;
    CHECK(host.is_host_root());
    CHECK(host.resolve("/etc/hostname").value() == "/etc/hostname");

    RootPrefix r("/tmp/img/");
    CHECK_FALSE(r.is_host_root());
    CHECK(r.base() == "/tmp/img");
    CHECK(r.resolve("/etc/hostname").value() == "/tmp/img/etc/hostname");
    CHECK(r.resolve("/").value() == "/tmp/img");
    CHECK(r("/run/ballast") == "/tmp/img/run/ballast");
    CHECK_FALSE(r.resolve("/../etc/shadow"));
}

TEST_CASE("open_beneath keeps symlinks inside the root", "[core][root]") {
    test::TempDir outside, t;
    test::write_text(outside / "secret", "host data");
    std::filesystem::create_directories(t / "etc");
    // An image may carry absolute or climbing symlinks; they must resolve inside the root.
    std::filesystem::create_symlink(outside / "secret", t / "etc/abs-link");
    std::filesystem::create_symlink("../../../../../../" + (outside / "secret").string(),
                                    t / "etc/climb-link");

    RootPrefix r(t.path());
    auto abs = r.open_beneath("/etc/abs-link", O_RDONLY);
    REQUIRE_FALSE(abs);  // resolves to ROOT/<outside>/secret, which does not exist
    CHECK(abs.error().code() == Errc::not_found);
    CHECK_FALSE(r.open_beneath("/etc/climb-link", O_RDONLY));

    auto created = r.open_beneath("/etc/new", O_WRONLY | O_CREAT | O_EXCL, 0640);
    REQUIRE(created);
    CHECK(::write(created->get(), "x", 1) == 1);
    CHECK(test::read_text(t / "etc/new") == "x");
    CHECK(test::read_text(outside / "secret") == "host data");
}

namespace {

// Runs `body` in a child where openat2 fails with ENOSYS, as under systemd's RestrictSUIDSGID=.
// Returns the child's exit status.
int without_openat2(const std::function<int()>& body) {
    pid_t pid = ::fork();
    if (pid == 0) {
        sock_filter filter[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_openat2, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        sock_fprog prog{static_cast<unsigned short>(std::size(filter)), filter};
        if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
            ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
            ::_exit(99);
        ::_exit(body());
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 100;
}

}  // namespace

TEST_CASE("open_beneath works where openat2 is filtered out", "[core][root]") {
    test::TempDir t;
    test::write_text(t / "file", "x");
    // The host root falls back to a plain open.
    CHECK(without_openat2([&] {
              auto fd = RootPrefix().open_beneath((t / "file").string(), O_RDONLY);
              return fd ? 0 : 1;
          }) == 0);
    // An image root refuses rather than resolve symlinks outside it.
    CHECK(without_openat2([&] {
              auto fd = RootPrefix(t.path()).open_beneath("/file", O_RDONLY);
              if (fd) return 1;
              return fd.error().code() == Errc::unsupported &&
                             fd.error().what().find("openat2") != std::string::npos
                         ? 0
                         : 2;
          }) == 0);
}
