// Test tool for the boot-control tests (not installed). Bridges the C++ state machine and the
// grub.cfg interpreter (tests/integration/helpers/grubsim.py):
//   boot-tool decide            JSON lines of grubenv variables on stdin; for each prints
//                               {"env": base64 block, "slot", "saved", "after": base64 block}
//   boot-tool torn OLD NEW K DIR
//                               writes DIR/env1 and DIR/env2 holding OLD, then saves NEW with
//                               the two-copy protocol, cutting the K-th 512-byte sector write
//                               (K counts from 0; writes after it are lost), keeps what the
//                               cut left in DIR/env11 and DIR/env12, loads (repairing) and
//                               prints {"completed", "load": {vars} or "error"}
//   boot-tool sdboot IMG OFFSET STEP...
//                               the systemd-boot backend on the ESP at OFFSET of IMG: each STEP
//                               (init:A:1.0, stage:B:2.0:3, commit:B, mark-bad:B, rollback:B,
//                               load: the agent's load, which finishes cut writes)
//                               as the agent makes it, then prints {"files", "slot" and
//                               "starts": what the model of systemd-boot starts and under which
//                               name, "state": the grubenv variables of the state loaded}
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "ballast/boot/esp.hpp"
#include "ballast/boot/grub.hpp"
#include "ballast/core/encoding.hpp"

using namespace ballast;
using namespace ballast::boot;
using nlohmann::json;

namespace {

grubenv::Vars vars_of(const json& j) {
    grubenv::Vars v;
    for (const auto& [k, val] : j.items())
        v.emplace_back(k, val.get<std::string>());
    return v;
}

json json_of(const grubenv::Vars& v) {
    json j = json::object();
    for (const auto& [k, val] : v)
        j[k] = val;
    return j;
}

// Files in a folder; writes go sector by sector and stop for good at the cut.
class TornStore final : public EnvStore {
  public:
    TornStore(std::string dir, long cut) : dir_(std::move(dir)), cut_(cut) {}
    Result<std::string> read(int copy) override {
        std::ifstream f(path(copy), std::ios::binary);
        std::stringstream ss;
        ss << f.rdbuf();
        return ss.str();
    }
    Status write(int copy, std::string_view block) override {
        std::string cur = read(copy).value();
        for (size_t s = 0; s < block.size(); s += 512) {
            if (sectors_ == cut_) return fail(Errc::io, "power cut");
            ++sectors_;
            cur.replace(s, 512, block.substr(s, 512));
            std::ofstream(path(copy), std::ios::binary | std::ios::trunc) << cur;
        }
        return {};
    }
    void put(int copy, const std::string& block) {
        std::ofstream(path(copy), std::ios::binary) << block;
    }

  private:
    std::string path(int copy) const { return dir_ + "/env" + std::to_string(copy); }
    std::string dir_;
    long cut_;
    long sectors_ = 0;
};

int fail_with(const Error& e) {
    std::fprintf(stderr, "boot-tool: %s\n", e.what().c_str());
    return 1;
}

// One transition of the systemd-boot backend, as the agent makes it ("stage" as an upgrade
// does: the target emptied and saved, then activated and saved).
Status sdboot_step(SdBootControl& bc, const std::string& step) {
    std::vector<std::string> f;
    for (size_t i = 0, j; i <= step.size(); i = j + 1) {
        j = step.find(':', i);
        if (j == std::string::npos) j = step.size();
        f.push_back(step.substr(i, j - i));
    }
    if (step == "load") {  // repairs, as the agent's does
        BALLAST_TRY(bc.load());
        return {};
    }
    if (f.size() < 2) return fail(Errc::invalid_argument, "bad step {}", step);
    const Slot slot = BALLAST_TRY(parse_slot(f[1]));
    if (f[0] == "init" && f.size() == 3) return bc.initialize(initial_state(slot, f[2]));
    auto s = BALLAST_TRY(bc.load());
    if (f[0] == "stage" && f.size() == 4) {
        auto emptied = BALLAST_TRY(begin_write(s, slot, other(slot)));
        BALLAST_TRY(bc.save(emptied));
        auto staged = BALLAST_TRY(activate(emptied, slot, std::stoi(f[3]), f[2], other(slot)));
        return bc.save(staged);
    }
    Result<BootState> next = fail(Errc::invalid_argument, "bad step {}", step);
    if (f[0] == "commit") next = commit(s, slot);
    if (f[0] == "mark-bad") next = mark_bad(s, slot);
    if (f[0] == "rollback") next = rollback(s, slot);
    return bc.save(BALLAST_TRY(std::move(next)));
}

}  // namespace

int main(int argc, char** argv) {
    std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "decide") {
        std::string line;
        while (std::getline(std::cin, line)) {
            auto vars = vars_of(json::parse(line));
            auto block = grubenv::serialize(vars).value();
            auto st = from_vars(vars);
            json out = {{"env", base64_encode(block)}};
            if (!st) {
                out["error"] = st.error().what();
            } else {
                auto d = decide(*st);
                out["slot"] = std::string(name(d.slot));
                out["saved"] = d.saved;
                out["after"] = base64_encode(grubenv::serialize(to_vars(d.after)).value());
            }
            std::cout << out.dump() << "\n";
        }
        return 0;
    }
    if (cmd == "torn" && argc == 6) {
        auto old_vars = vars_of(json::parse(argv[2]));
        auto new_state = from_vars(vars_of(json::parse(argv[3]))).value();
        TornStore store(argv[5], std::stol(argv[4]));
        const auto old_block = grubenv::serialize(old_vars).value();
        store.put(1, old_block);
        store.put(2, old_block);
        GrubBootControl bc(store);
        bool completed = bc.save(new_state).has_value();
        // What the cut left, before the agent's load repairs it: for the GRUB interpreter.
        for (int c : {1, 2})
            store.put(c + 10, store.read(c).value());
        TornStore reader(argv[5], -1);
        GrubBootControl after(reader);
        auto loaded = after.load();
        json out = {{"completed", completed}};
        if (loaded)
            out["load"] = json_of(to_vars(*loaded));
        else
            out["error"] = loaded.error().what();
        std::cout << out.dump() << "\n";
        return 0;
    }
    if (cmd == "sdboot" && argc >= 4) {
        auto esp = Esp::open(argv[2], std::stoull(argv[3]), 0);
        if (!esp) return fail_with(esp.error());
        FatEnvStore record(**esp, kSdBootRecord1, kSdBootRecord2);
        FatUkiStore ukis(**esp);
        SdBootControl bc(record, ukis);
        for (int i = 4; i < argc; ++i)
            if (auto st = sdboot_step(bc, argv[i]); !st) return fail_with(st.error());
        auto files = ukis.list();
        if (!files) return fail_with(files.error());
        const auto listing = read_listing(*files);
        json out = {{"files", json::array()}};
        for (const auto& f : *files)
            out["files"].push_back(f.name);
        if (auto slot = loader_choice(listing)) {
            const auto& f = *listing.at(*slot);
            out["slot"] = std::string(name(*slot));
            // The name the loader starts it under: renamed first when it is counted.
            out["starts"] = f.counter ? sdboot::next_name(f.name, *f.counter) : f.name;
        }
        if (auto s = bc.load(false)) out["state"] = json_of(to_vars(*s));
        std::cout << out.dump() << "\n";
        return 0;
    }
    std::fprintf(stderr,
                 "usage: boot-tool decide | boot-tool torn OLD NEW K DIR | boot-tool sdboot IMG "
                 "OFFSET [init:SLOT:VERSION | stage:SLOT:VERSION:TRIES | commit:SLOT | "
                 "mark-bad:SLOT | rollback:BOOTED | load]...\n");
    return 2;
}
