// network: the built-in step of the initramfs, boot and reconcile stages where the config has a
// `network:` block (config/network.hpp). Each document becomes /etc/netplan/50-ballast-NN.yaml,
// and netplan (the image's renderer, for systemd-networkd) renders it. Nothing is half-applied:
// the documents are rendered first in a scratch folder, and a document netplan refuses is an
// error naming the user's file:line:col, with /etc/netplan and the running network left as they
// were. On the running system a change is then rendered and networkd reloaded; in the initramfs
// (not live) netplan's systemd generator renders them at boot, before networkd starts.
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <optional>

#include "ballast/core/files.hpp"
#include "ballast/stages/modules.hpp"

namespace ballast::stages::modules {
namespace {

constexpr const char* kGenerate = "/usr/libexec/netplan/generate";
constexpr const char* kScratch = "/run/ballast/netplan-check";

// Ballast's own scratch folder under the root's /run; remove_all does not follow symlinks inside
// it, and the folder itself must resolve inside the root (an image whose /run is a symlink
// elsewhere keeps its scratch folder rather than have something outside removed).
void clear_scratch(const StageContext& ctx) {
    std::error_code ec;
    const auto root = std::filesystem::weakly_canonical(ctx.root.base(), ec);
    const auto dir = std::filesystem::weakly_canonical(ctx.root(kScratch), ec);
    if (ec || !dir.string().starts_with(root.string())) return;
    std::filesystem::remove_all(dir, ec);
}

// netplan merges every file of these folders: the image's own ones take part in the check too
// (a device defined there, a conflict with one), Ballast's documents aside.
constexpr const char* kNetplanDirs[] = {"/lib/netplan", "/etc/netplan", "/run/netplan"};

Status copy_image_documents(const StageContext& ctx) {
    for (const char* dir : kNetplanDirs) {
        std::error_code ec;
        for (const auto& e : std::filesystem::directory_iterator(ctx.root(dir), ec)) {
            const std::string name = e.path().filename().string();
            if (!name.ends_with(".yaml") || name.starts_with("50-ballast-")) continue;
            auto text = BALLAST_TRY(read_beneath(ctx.root, std::string(dir) + "/" + name));
            if (!text) continue;
            BALLAST_TRY(mkdirs_beneath(ctx.root, std::string(kScratch) + dir, 0700));
            BALLAST_TRY(
                write_beneath(ctx.root, std::string(kScratch) + dir + "/" + name, *text, 0600));
        }
    }
    return {};
}

std::string doc_path(size_t n) {
    return fmt::format("/etc/netplan/50-ballast-{:02}.yaml", n);
}

// netplan's warnings ("** (generate:42): WARNING **: 10:00:00.000: `gateway4` has been
// deprecated, ..."): the message only.
std::vector<std::string> warnings(const std::string& err) {
    std::vector<std::string> out;
    size_t pos = 0;
    while (pos < err.size()) {
        auto eol = err.find('\n', pos);
        std::string_view line(err.data() + pos,
                              (eol == std::string::npos ? err.size() : eol) - pos);
        pos = eol == std::string::npos ? err.size() : eol + 1;
        if (auto at = line.find("WARNING **: "); at != std::string_view::npos) {
            auto msg = line.substr(at + 12);
            if (auto sp = msg.find(' '); sp != std::string_view::npos && sp < 16)
                msg = msg.substr(sp + 1);  // the time stamp
            out.emplace_back(msg);
        }
    }
    return out;
}

// netplan's error: the line naming the file it read (warnings come before it), with the user's
// file put back. A converted (version 1) document has no lines of the user's: its `network:`
// key is named instead.
std::string user_message(const std::string& err, const std::vector<config::NetworkDoc>& docs,
                         const std::string& scratch) {
    std::string text;
    for (size_t pos = 0; pos < err.size();) {
        auto eol = err.find('\n', pos);
        std::string line =
            err.substr(pos, eol == std::string::npos ? std::string::npos : eol - pos);
        pos = eol == std::string::npos ? err.size() : eol + 1;
        if (line.starts_with(scratch)) {
            text = line;
            break;
        }
        if (text.empty() && !line.empty() && line.find("WARNING **") == std::string::npos)
            text = line;  // an error that names no file
    }
    for (size_t i = 0; i < docs.size(); ++i) {
        const std::string ours = scratch + doc_path(i + 1);
        if (!text.starts_with(ours)) continue;
        if (!docs[i].converted) {
            text.replace(0, ours.size(), docs[i].pos.file);
            break;
        }
        auto end = ours.size();  // drop ":line:col" of the converted document
        while (end < text.size() &&
               (text[end] == ':' || std::isdigit(static_cast<unsigned char>(text[end]))))
            ++end;
        text.replace(0, end, fmt::format("{} (version 1, converted): ", to_string(docs[i].pos)));
        break;
    }
    return text;
}

// Every document already written as it is, and none to remove: nothing to check or render (the
// stages run this at every boot and reconcile; netplan's check costs about a second under TCG).
// Documents once accepted are not checked again against image files an upgrade changed, nor is
// a missing netplan reported again: netplan's own generator reports those at boot.
bool in_place(const StageContext& ctx, const std::vector<config::NetworkDoc>& docs,
              bool remove_stale) {
    for (size_t i = 0; i < docs.size(); ++i) {
        auto text = read_beneath(ctx.root, doc_path(i + 1));
        if (!text || !*text || **text != docs[i].netplan) return false;
    }
    if (!remove_stale) return true;
    auto st = stat_beneath(ctx.root, doc_path(docs.size() + 1));
    return st && !*st;
}

}  // namespace

std::string platform_network_file(std::string_view provider) {
    return fmt::format("39-{}-platform-network.yaml", provider);
}

bool is_platform_network_file(std::string_view path) {
    const auto name = path.substr(path.rfind('/') + 1);
    return name.starts_with("39-") && name.ends_with("-platform-network.yaml");
}

bool network_pending(const config::Config& cfg, const StageContext& ctx) {
    if (!cfg.network.empty() || cfg.network_kept) return true;
    auto st = stat_beneath(ctx.root, doc_path(1));  // documents to remove
    return st && *st;
}

void network(const config::Config& cfg, StageContext& ctx, ModuleResult& r, bool remove_stale) {
    if (cfg.network_kept) {
        r.note(
            "network: a file with network config was not applied (see its errors): the "
            "network config in place is kept");
        return;
    }
    std::vector<config::NetworkDoc> docs;
    bool disabled = false;
    for (const auto& d : cfg.network) {
        if (d.disabled)
            disabled = true;
        else
            docs.push_back(d);
    }
    if (disabled) docs.clear();  // cloud-init: `network: {config: disabled}` anywhere wins
    // A platform's network config only where the config has none of its own, as cloud-init
    // prefers a system config's network config to a datasource's.
    if (std::any_of(docs.begin(), docs.end(),
                    [](const auto& d) { return !is_platform_network_file(d.pos.file); }))
        std::erase_if(docs, [&](const auto& d) {
            if (!is_platform_network_file(d.pos.file)) return false;
            r.note(
                fmt::format("network: {} (the platform's network config) is not used: the "
                            "config has network config of its own",
                            d.pos.file));
            return true;
        });
    if (docs.empty() && !disabled && !remove_stale) return;
    if (in_place(ctx, docs, remove_stale || disabled)) return;
    auto gen = stat_beneath(ctx.root, kGenerate);
    if (!docs.empty() && (!gen || !*gen)) {
        r.error(
            fmt::format("network: netplan is not in the image ({} is missing): the network "
                        "config cannot be rendered",
                        kGenerate));
        return;
    }
    // 1. Render in a scratch folder: nothing changes unless netplan takes every document.
    if (!docs.empty()) {
        clear_scratch(ctx);
        if (auto made = mkdirs_beneath(ctx.root, std::string(kScratch) + "/etc/netplan", 0700);
            !made) {
            r.error(made.error().what());
            return;
        }
        for (size_t i = 0; i < docs.size(); ++i)
            if (!r.check(write_beneath(ctx.root, std::string(kScratch) + doc_path(i + 1),
                                       docs[i].netplan, 0600)))
                return;
        if (!r.check(copy_image_documents(ctx))) return;
        ShellOptions opts;
        opts.step_id = "network";
        opts.timeout = std::chrono::seconds(30);
        auto checked = run_argv(ctx, {kGenerate, "--root-dir", kScratch}, opts);
        clear_scratch(ctx);
        if (!checked) {
            r.error("network: " + std::string(checked.error().what()));
            return;
        }
        if (!checked->success()) {
            r.error(user_message(checked->err.empty() ? checked->describe() : checked->err, docs,
                                 kScratch) +
                    " (network config not applied; the network is left as it was)");
            return;
        }
        for (const auto& w : warnings(checked->err))
            r.note("network: netplan: " + w);
    }
    // 2. Ballast's documents in /etc/netplan, exactly: new or changed ones written, others gone.
    // What was there before is kept in memory: a render that fails puts it back.
    std::vector<std::pair<std::string, std::optional<std::string>>> before;
    for (size_t n = 1;; ++n) {
        auto old = read_beneath(ctx.root, doc_path(n));
        if (!old || !*old) {
            if (n > docs.size()) break;
            before.emplace_back(doc_path(n), std::nullopt);
            continue;
        }
        before.emplace_back(doc_path(n), **old);
    }
    auto restore = [&] {
        for (const auto& [path, text] : before) {
            if (text)
                (void)write_beneath(ctx.root, path, *text, 0600);
            else
                (void)remove_beneath(ctx.root, path);
        }
    };
    bool changed = false;
    for (size_t i = 0; i < docs.size(); ++i) {
        auto w = ensure_file(ctx.root, doc_path(i + 1), docs[i].netplan, 0600);
        if (!w) {
            r.error(w.error().what());
            return;
        }
        if (*w) {
            r.change("wrote " + doc_path(i + 1));
            changed = true;
        }
    }
    for (size_t n = docs.size() + 1; remove_stale || disabled; ++n) {
        auto st = stat_beneath(ctx.root, doc_path(n));
        if (!st || !*st) break;
        if (auto gone = remove_beneath(ctx.root, doc_path(n)); !gone) {
            r.error(gone.error().what());
            return;
        }
        r.change("removed " + doc_path(n));
        changed = true;
    }
    if (!changed || !gen || !*gen) return;
    // 3. Rendered for networkd (/run/systemd/network), as netplan's generator does at boot; on
    // the running system networkd reloads, reconfiguring the links whose files changed.
    ShellOptions opts;
    opts.step_id = "network";
    opts.timeout = std::chrono::seconds(30);
    auto rendered = run_argv(ctx, {kGenerate}, opts);
    if (!rendered || !rendered->success()) {
        r.error("network: netplan generate: " +
                (rendered ? rendered->describe() + ": " + rendered->err
                          : std::string(rendered.error().what())) +
                " (Ballast's documents were put back as they were)");
        restore();
        return;
    }
    r.change("rendered the network config for systemd-networkd");
    if (!ctx.live) return;
    auto reload = run_argv(ctx, {"networkctl", "reload"}, opts);
    if (!reload || !reload->success())
        r.error("network: networkctl reload: " +
                (reload ? reload->describe() : std::string(reload.error().what())));
    else
        r.change("reloaded systemd-networkd");
}

}  // namespace ballast::stages::modules
