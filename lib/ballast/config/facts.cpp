#include "ballast/config/facts.hpp"

#include <sys/utsname.h>
#include <unistd.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <string>

#include "ballast/core/atomic_file.hpp"
#include "ballast/core/secret.hpp"

namespace ballast::config {
namespace {

std::string first_line(const std::filesystem::path& p) {
    auto r = read_file(p, 1u << 16);
    if (!r) return "";
    auto nl = r->find('\n');
    return r->substr(0, nl);
}

// os-release: KEY=value with optional quotes.
nlohmann::json os_release(const RootPrefix& root) {
    nlohmann::json os = {{"name", ""}, {"id", ""}, {"version", ""}, {"release", ""}};
    auto text = read_file(root("/etc/os-release"));
    if (!text) text = read_file(root("/usr/lib/os-release"));
    if (!text) return os;
    size_t i = 0;
    while (i < text->size()) {
        size_t j = text->find('\n', i);
        if (j == std::string::npos) j = text->size();
        std::string line = text->substr(i, j - i);
        i = j + 1;
        auto eq = line.find('=');
        if (eq == std::string::npos) continue;
        std::string k = line.substr(0, eq), v = line.substr(eq + 1);
        if (v.size() >= 2 && (v.front() == '"' || v.front() == '\'') && v.back() == v.front())
            v = v.substr(1, v.size() - 2);
        if (k == "NAME") os["vendor"] = v;
        if (k == "ID") os["id"] = v, os["name"] = v;
        if (k == "VERSION_ID") os["version"] = v, os["release"] = v;
        if (k == "PRETTY_NAME") os["pretty_name"] = v;
    }
    return os;
}

std::string go_arch(std::string machine) {
    if (machine == "x86_64") return "amd64";
    if (machine == "aarch64") return "arm64";
    if (machine == "armv7l") return "arm";
    if (machine == "i686" || machine == "i386") return "386";
    return machine;
}

nlohmann::json dmi(const char* prefix) {
    const std::string base = std::string("/sys/class/dmi/id/") + prefix;
    return {{"name", first_line(base + "_name")},
            {"vendor", first_line(base + "_vendor")},
            {"version", first_line(base + "_version")},
            {"serial", first_line(base + "_serial")}};
}

nlohmann::json cpu_facts() {
    nlohmann::json cpu = {{"model", ""}, {"vendor", ""}, {"threads", 0}};
    std::ifstream f("/proc/cpuinfo");
    std::string line;
    int threads = 0;
    while (std::getline(f, line)) {
        auto colon = line.find(':');
        if (colon == std::string::npos) continue;
        std::string k = line.substr(0, line.find_last_not_of(" \t", colon - 1) + 1);
        std::string v = colon + 2 <= line.size() ? line.substr(colon + 2) : "";
        if (k == "processor") ++threads;
        if (k == "model name" && cpu["model"] == "") cpu["model"] = v;
        if (k == "vendor_id" && cpu["vendor"] == "") cpu["vendor"] = v;
    }
    cpu["threads"] = threads;
    cpu["cpus"] = threads;
    return cpu;
}

nlohmann::json memory_facts() {
    std::ifstream f("/proc/meminfo");
    std::string k;
    long long kb = 0;
    while (f >> k) {
        if (k == "MemTotal:") {
            f >> kb;
            break;
        }
        f.ignore(256, '\n');
    }
    return {{"size", kb / 1024}};  // MiB, as sysinfo reports it
}

nlohmann::json network_facts() {
    nlohmann::json list = nlohmann::json::array();
    std::error_code ec;
    std::vector<std::string> names;
    for (auto& e : std::filesystem::directory_iterator("/sys/class/net", ec))
        names.push_back(e.path().filename());
    std::sort(names.begin(), names.end());
    for (const auto& n : names) {
        if (n == "lo") continue;
        list.push_back(
            {{"name", n}, {"macaddress", first_line("/sys/class/net/" + n + "/address")}});
    }
    return list;
}

std::string random_id() {
    // 32 characters from [0-9a-z], as yip's .Random.
    std::array<uint8_t, 32> bytes{};
    (void)fill_random(bytes);
    std::string out;
    for (auto b : bytes)
        out += "0123456789abcdefghijklmnopqrstuvwxyz"[b % 36];
    return out;
}

}  // namespace

Result<nlohmann::json> gather_facts(const RootPrefix& root) {
    std::string machine_id = first_line(root("/etc/machine-id"));
    if (machine_id.empty()) machine_id = first_line(root("/var/lib/dbus/machine-id"));
    std::string hostname;
    if (root.is_host_root()) {
        char buf[256] = {};
        if (::gethostname(buf, sizeof buf - 1) == 0) hostname = buf;
    } else {
        hostname = first_line(root("/etc/hostname"));
    }
    struct utsname u {};
    ::uname(&u);
    nlohmann::json os = os_release(root);
    os["architecture"] = go_arch(u.machine);
    nlohmann::json product = dmi("product");
    product["uuid"] = first_line("/sys/class/dmi/id/product_uuid");
    std::error_code ec;
    const bool tpm =
        std::filesystem::exists("/dev/tpmrm0", ec) || std::filesystem::exists("/dev/tpm0", ec);

    nlohmann::json values = {
        {"node", {{"hostname", hostname}, {"machineid", machine_id}}},
        {"os", os},
        {"kernel", {{"release", u.release}, {"version", u.version}, {"architecture", u.machine}}},
        {"product", product},
        {"board", dmi("board")},
        {"bios",
         {{"vendor", first_line("/sys/class/dmi/id/bios_vendor")},
          {"version", first_line("/sys/class/dmi/id/bios_version")}}},
        {"cpu", cpu_facts()},
        {"memory", memory_facts()},
        {"network", network_facts()},
        {"tpm", {{"present", tpm}}},
        {"arch", go_arch(u.machine)},
    };
    return nlohmann::json{
        {"MachineID", machine_id}, {"Hostname", hostname},        {"UUID", product["uuid"]},
        {"Random", random_id()},   {"Values", std::move(values)},
    };
}

}  // namespace ballast::config
