#include "ballast/crypt/ask.hpp"

#include <fcntl.h>
#include <termios.h>
#include <unistd.h>

#include <cstdlib>

#include "ballast/core/fd.hpp"
#include "ballast/core/process.hpp"

namespace ballast::crypt {

namespace {

// Best effort: a prompt that cannot be shown still reads the answer.
void put(int fd, std::string_view s) {
    while (!s.empty()) {
        ssize_t n = ::write(fd, s.data(), s.size());
        if (n <= 0) return;
        s.remove_prefix(size_t(n));
    }
}

std::optional<std::string> from_tty(std::string_view prompt) {
    int raw = ::open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (raw < 0) return std::nullopt;
    UniqueFd tty(raw);
    termios old{};
    if (::tcgetattr(tty.get(), &old) != 0) return std::nullopt;
    termios quiet = old;
    quiet.c_lflag &= ~tcflag_t(ECHO);
    put(tty.get(), std::string(prompt) + ": ");
    // Never read a secret with echo on.
    if (::tcsetattr(tty.get(), TCSAFLUSH, &quiet) != 0) return std::nullopt;
    std::string line;
    char c = 0;
    while (::read(tty.get(), &c, 1) == 1 && c != '\n')
        line.push_back(c);
    ::tcsetattr(tty.get(), TCSAFLUSH, &old);
    put(tty.get(), "\n");
    if (line.empty()) return std::nullopt;
    return line;
}

std::optional<std::string> from_agent(std::string_view prompt, std::chrono::seconds timeout) {
    for (const char* tool : {"/usr/bin/systemd-ask-password", "/bin/systemd-ask-password"}) {
        if (::access(tool, X_OK) != 0) continue;
        ProcessOptions o;
        o.argv = {tool, fmt::format("--timeout={}", timeout.count()), std::string(prompt) + ":"};
        auto r = run_process(o);
        if (!r || r->exit_code != 0) return std::nullopt;
        std::string s = std::move(r->out);
        while (!s.empty() && (s.back() == '\n' || s.back() == '\r'))
            s.pop_back();
        if (s.empty()) return std::nullopt;
        return s;
    }
    return std::nullopt;
}

}  // namespace

std::optional<std::string> ask_secret(std::string_view prompt, std::string_view env_name,
                                      std::chrono::seconds timeout) {
    if (!env_name.empty())
        if (const char* v = std::getenv(std::string(env_name).c_str())) return std::string(v);
    if (::isatty(STDIN_FILENO)) return from_tty(prompt);
    // Under a systemd unit (boot), the password agents (console, Plymouth) answer; elsewhere
    // nobody would, and waiting for them would hang.
    if (std::getenv("INVOCATION_ID")) return from_agent(prompt, timeout);
    return std::nullopt;
}

}  // namespace ballast::crypt
