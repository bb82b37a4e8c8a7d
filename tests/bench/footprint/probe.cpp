// Start-up probe for the footprint benchmark: runs a daemon, and reports, in microseconds from
// the exec, when READY=1 arrived on a NOTIFY_SOCKET and when a bus name got an owner (from the
// NameOwnerChanged signal, no polling). Then samples the daemon's memory and wake-ups while it
// sits idle, and stops it with SIGTERM, timing the exit.
//   footprint-probe --address ADDR --name NAME --idle SECONDS -- COMMAND [ARGS...]
// Prints one JSON object.
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;

long long us_since(Clock::time_point t0) {
    return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count();
}

std::map<std::string, long long> status_kb(pid_t pid) {
    std::map<std::string, long long> out;
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(f, line)) {
        for (const char* key : {"VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"}) {
            if (line.rfind(std::string(key) + ":", 0) == 0)
                out[key] = std::stoll(line.substr(std::strlen(key) + 1));
        }
    }
    return out;
}

// Context switches of every thread: each one is a wake-up of that thread.
long long wakeups(pid_t pid) {
    long long total = 0;
    std::error_code ec;
    for (auto& t :
         std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
        std::ifstream f(t.path() / "status");
        std::string line;
        while (std::getline(f, line)) {
            if (line.rfind("voluntary_ctxt_switches:", 0) == 0 ||
                line.rfind("nonvoluntary_ctxt_switches:", 0) == 0)
                total += std::stoll(line.substr(line.find(':') + 1));
        }
    }
    return total;
}

int threads(pid_t pid) {
    int n = 0;
    std::error_code ec;
    for ([[maybe_unused]] auto& t :
         std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec))
        ++n;
    return n;
}

}  // namespace

int main(int argc, char** argv) {
    std::string address, name;
    double idle = 5;
    int i = 1;
    for (; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--address" && i + 1 < argc)
            address = argv[++i];
        else if (a == "--name" && i + 1 < argc)
            name = argv[++i];
        else if (a == "--idle" && i + 1 < argc)
            idle = std::atof(argv[++i]);
        else if (a == "--") {
            ++i;
            break;
        }
    }
    if (address.empty() || name.empty() || i >= argc) {
        std::fprintf(stderr,
                     "usage: footprint-probe --address ADDR --name NAME [--idle S] -- CMD...\n");
        return 2;
    }

    // Watch the bus for the name first, so the signal cannot be missed.
    sd_bus* bus = nullptr;
    if (sd_bus_new(&bus) < 0 || sd_bus_set_address(bus, address.c_str()) < 0 ||
        sd_bus_set_bus_client(bus, 1) < 0 || sd_bus_start(bus) < 0) {
        std::fprintf(stderr, "footprint-probe: cannot connect to %s\n", address.c_str());
        return 1;
    }
    std::string match =
        "type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged',arg0='" + name + "'";
    if (sd_bus_add_match(bus, nullptr, match.c_str(), nullptr, nullptr) < 0) return 1;

    char dir[] = "/tmp/footprint-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    std::string sock_path = std::string(dir) + "/notify";
    int ns = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::strncpy(sa.sun_path, sock_path.c_str(), sizeof sa.sun_path - 1);
    if (bind(ns, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) return 1;
    setenv("NOTIFY_SOCKET", sock_path.c_str(), 1);
    unsetenv("WATCHDOG_USEC");

    pid_t pid;
    auto t0 = Clock::now();
    if (posix_spawn(&pid, argv[i], nullptr, nullptr, argv + i, environ) != 0) {
        std::perror("posix_spawn");
        return 1;
    }
    long long ready_us = -1, owned_us = -1;
    while ((ready_us < 0 || owned_us < 0) && us_since(t0) < 30'000'000) {
        char buf[4096];
        ssize_t n = recv(ns, buf, sizeof buf - 1, 0);
        if (n > 0) {
            buf[n] = 0;
            if (std::strstr(buf, "READY=1") && ready_us < 0) ready_us = us_since(t0);
        }
        sd_bus_message* m = nullptr;
        int r = sd_bus_process(bus, &m);
        if (m) {
            const char *n0, *old_owner, *new_owner;
            if (sd_bus_message_is_signal(m, "org.freedesktop.DBus", "NameOwnerChanged") &&
                sd_bus_message_read(m, "sss", &n0, &old_owner, &new_owner) >= 0 && *new_owner &&
                owned_us < 0)
                owned_us = us_since(t0);
            sd_bus_message_unref(m);
        }
        if (r == 0) {
            // Either source may fire next; a short wait on the bus keeps both responsive.
            (void)sd_bus_wait(bus, 1000);
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            std::fprintf(stderr, "footprint-probe: %s exited early\n", argv[i]);
            return 1;
        }
        // The daemon may not speak sd_notify at all (RAUC does not); the bus name then decides.
        if (owned_us >= 0 && ready_us < 0 && us_since(t0) > owned_us + 2'000'000) break;
    }

    // Let start-up work settle, then measure an idle window.
    std::this_thread::sleep_for(std::chrono::milliseconds(1000));
    auto mem = status_kb(pid);
    const int nthreads = threads(pid);
    long long w0 = wakeups(pid);
    auto ti = Clock::now();
    std::this_thread::sleep_for(std::chrono::duration<double>(idle));
    long long w1 = wakeups(pid);
    double idle_s = us_since(ti) / 1e6;

    auto ts = Clock::now();
    kill(pid, SIGTERM);
    int st = 0;
    waitpid(pid, &st, 0);
    long long stop_us = us_since(ts);

    nlohmann::json out = {
        {"ready_us", ready_us},
        {"name_owned_us", owned_us},
        {"vmrss_kb", mem["VmRSS"]},
        {"rss_anon_kb", mem["RssAnon"]},
        {"rss_file_kb", mem["RssFile"]},
        {"threads", nthreads},
        {"idle_wakeups_per_s", (w1 - w0) / idle_s},
        {"stop_us", stop_us},
        {"exit_status", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st)},
    };
    std::printf("%s\n", out.dump().c_str());
    unlink(sock_path.c_str());
    rmdir(dir);
    sd_bus_flush_close_unref(bus);
    return 0;
}
