#include "ballast/boot/sdboot.hpp"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "ballast/core/text.hpp"

namespace ballast::boot {
namespace {

std::string stem(Slot s) {
    return fmt::format("ballast-{}", s == Slot::A ? 'a' : 'b');
}

// The slot a file belongs to when its name is one of this backend's three forms.
std::optional<Slot> slot_file(std::string_view file, bool& hidden,
                              std::optional<sdboot::Counter>& counter) {
    const std::string lname = ascii_lower(file);
    for (Slot s : {Slot::A, Slot::B}) {
        const std::string st = stem(s);
        hidden = lname == st + ".off";
        counter.reset();
        if (hidden || lname == st + ".efi") return s;
        if (lname.starts_with(st + "+") && file.rfind('+') == st.size()) {
            counter = sdboot::parse_counter(file);
            if (counter) return s;
        }
    }
    return std::nullopt;
}

UkiListing::SlotFile slot_entry(std::string name, std::optional<sdboot::Identity> id) {
    UkiListing::SlotFile f;
    bool hidden = false;
    (void)slot_file(name, hidden, f.counter);
    f.listed = !hidden && id.has_value();
    f.identity = std::move(id);
    f.name = std::move(name);
    return f;
}

std::vector<sdboot::Entry> menu_entries(const UkiListing& l) {
    std::vector<sdboot::Entry> out = l.foreign;
    for (const auto& f : l.slots)
        if (f && f->listed) out.push_back({f->name, *f->identity});
    return out;
}

// Whether the loader tries `a` before `b` (a listed file before one it skips).
bool tried_before(const UkiListing::SlotFile& a, const UkiListing::SlotFile& b) {
    if (a.listed != b.listed) return a.listed;
    return a.listed && sdboot::menu_compare({a.name, *a.identity}, {b.name, *b.identity}) < 0;
}

// `l` with `slot`'s file under `name`.
UkiListing renamed(UkiListing l, Slot slot, const std::string& name) {
    auto& f = l.slots[slot == Slot::A ? 0 : 1];
    f = slot_entry(name, f->identity);
    return l;
}

std::string choice_name(std::optional<Slot> s, const std::string& foreign) {
    if (s) return fmt::format("slot {}", name(*s));
    if (!foreign.empty()) return fmt::format("{}/{} (not Ballast's)", kUkiDir, foreign);
    return "nothing";
}

// The loader starts what decide() decides for `s` with these names, whenever decide() picks a
// slot whose UKI is listed (else the loader starts what is left, as GRUB falls back to last good).
Status check_choice(const BootState& s, const UkiListing& names, std::string_view when) {
    const Decision d = decide(s);
    const auto& f = names.at(d.slot);
    if (!s.at(d.slot).ok || !f || !f->listed) return {};
    std::string foreign;
    const auto got = loader_choice(names, &foreign);
    if (got == d.slot) return {};
    return fail(Errc::unsupported,
                "systemd-boot would start {} rather than slot {} {} (menu order: sort key, "
                "version, then file name)",
                choice_name(got, foreign), name(d.slot), when);
}

}  // namespace

std::optional<Slot> slot_of_uki_name(std::string_view file) {
    bool hidden = false;
    std::optional<sdboot::Counter> counter;
    auto s = slot_file(file, hidden, counter);
    if (hidden) return std::nullopt;
    return s;
}

Result<std::optional<Slot>> booted_slot_from_loader(const std::string& efivars) {
    auto v = BALLAST_TRY(read_efi_variable(efivars, "LoaderEntrySelected", kLoaderGuid));
    if (!v) return std::nullopt;
    auto id = ascii_of_ucs2(*v);
    if (!id) return std::nullopt;
    return slot_of_uki_name(*id);
}

std::string uki_name(Slot s, std::optional<sdboot::Counter> counter) {
    return sdboot::with_counter(stem(s) + ".efi", counter);
}

std::string hidden_uki_name(Slot s) {
    return stem(s) + ".off";
}

UkiListing read_listing(const std::vector<UkiStore::File>& files) {
    UkiListing l;
    std::array<uint64_t, 2> data{}, sizes{};
    for (const auto& file : files) {
        bool hidden = false;
        std::optional<sdboot::Counter> counter;
        const auto slot = slot_file(file.name, hidden, counter);
        if (!slot) {
            if (sdboot::listed_name(file.name) && file.identity)
                l.foreign.push_back({file.name, *file.identity});
            continue;
        }
        auto entry = slot_entry(file.name, file.identity);
        auto& cur = l.slots[*slot == Slot::A ? 0 : 1];
        auto& cur_data = data[*slot == Slot::A ? 0 : 1];
        auto& cur_size = sizes[*slot == Slot::A ? 0 : 1];
        // Two names for one slot. The one the loader tries first is the slot's; the other is
        // an alias to drop when it names the same data (a rename cut between its directory
        // writes), else a stale copy to put aside.
        if (!cur) {
            cur = std::move(entry);
            cur_data = file.data;
            cur_size = file.size;
            continue;
        }
        const bool same = file.data != 0 && file.data == cur_data && file.size == cur_size;
        std::string loser = entry.name;
        if (tried_before(entry, *cur)) {
            loser = cur->name;
            cur = std::move(entry);
            cur_data = file.data;
            cur_size = file.size;
        }
        (same ? l.aliases : l.strays).push_back(std::move(loser));
    }
    return l;
}

std::optional<Slot> loader_choice(const UkiListing& l, std::string* foreign) {
    auto first = sdboot::first_entry(menu_entries(l));
    if (!first) return std::nullopt;
    for (Slot s : {Slot::A, Slot::B})
        if (l.at(s) && l.at(s)->name == first->file) return s;
    if (foreign) *foreign = first->file;
    return std::nullopt;
}

BootState merge(const BootState& record, const UkiListing& l) {
    BootState s = record;
    for (Slot slot : {Slot::A, Slot::B}) {
        auto& i = s.at(slot);
        const auto& f = l.at(slot);
        if (!f || !f->listed) {
            i.ok = i.trial = false;
            i.tries = 0;
        } else if (!f->counter) {
            i.ok = true;
            i.trial = false;
            i.tries = 0;
        } else if (f->counter->left > 0) {
            i.ok = i.trial = true;
            i.tries = std::min(f->counter->left, kMaxTries);
        } else {
            i.ok = true;
            i.trial = record.at(slot).trial;
            i.tries = 0;
        }
    }
    return s;
}

Result<std::vector<Rename>> plan(const BootState& s, const UkiListing& l) {
    if (s.recovery_next)
        return fail(Errc::unsupported,
                    "the systemd-boot backend has no recovery entry yet: a one-shot recovery boot "
                    "needs the GRUB backend");
    UkiListing after = l;
    for (Slot slot : {Slot::A, Slot::B}) {
        const auto& f = l.at(slot);
        const auto& i = s.at(slot);
        if (!f) {
            if (i.ok)
                return fail(Errc::not_found, "slot {} has no UKI in {}: it cannot be made bootable",
                            name(slot), kUkiDir);
            continue;
        }
        std::string want;
        if (!i.ok) {
            want = hidden_uki_name(slot);
        } else if (!f->identity) {
            return fail(Errc::invalid_argument,
                        "{}/{}: no .osrel section with an ID or NAME: systemd-boot would not list "
                        "slot {}",
                        kUkiDir, f->name, name(slot));
        } else if (i.trial) {
            // The tries left are the loader's once it counts them.
            want = f->listed && f->counter ? f->name : uki_name(slot, sdboot::Counter{i.tries, 0});
        } else {
            // A good slot that the loader would sort before the primary one is held behind it
            // with no tries left; it is still started when the primary is spent or gone.
            const Slot p = s.primary();
            const auto& pf = l.at(p);
            const bool held = slot != p && s.at(p).ok && pf && pf->identity &&
                              sdboot::menu_compare({uki_name(slot, std::nullopt), *f->identity},
                                                   {uki_name(p, std::nullopt), *pf->identity}) < 0;
            if (!held)
                want = uki_name(slot, std::nullopt);
            else if (f->listed && f->counter && f->counter->left == 0)
                want = f->name;
            else
                want = uki_name(slot, sdboot::Counter{0, f->counter ? f->counter->done : 0});
        }
        if (want != f->name) after = renamed(std::move(after), slot, want);
    }

    const bool listed = std::any_of(after.slots.begin(), after.slots.end(),
                                    [](const auto& f) { return f && f->listed; });
    if (!listed)
        return fail(Errc::invalid_argument,
                    "refused: no slot would be left in systemd-boot's menu ({})",
                    describe(s, Slot::A) + "; " + describe(s, Slot::B));
    BALLAST_TRY(check_choice(s, after, "at the next boot"));
    const Slot next = decide(s).slot;
    if (s.at(next).trial && s.at(next).tries > 0 && after.at(next) && after.at(next)->listed) {
        BootState spent = s;
        spent.at(next).tries = 0;
        const auto& nf = *after.at(next);
        BALLAST_TRY(check_choice(
            spent, renamed(after, next, sdboot::with_counter(nf.name, sdboot::Counter{0, 1})),
            fmt::format("once slot {}'s tries are spent", name(next))));
    }

    std::vector<Rename> renames;
    for (Slot slot : {Slot::A, Slot::B})
        if (l.at(slot) && l.at(slot)->name != after.at(slot)->name)
            renames.push_back({l.at(slot)->name, after.at(slot)->name});
    // One rename at a time: each step must leave the loader starting what it starts now or what
    // it starts once all are done.
    const auto before_choice = loader_choice(l), after_choice = loader_choice(after);
    auto safe = [&](const std::vector<Rename>& order) {
        UkiListing cur = l;
        for (const auto& r : order) {
            for (Slot slot : {Slot::A, Slot::B})
                if (cur.at(slot) && cur.at(slot)->name == r.from) cur = renamed(cur, slot, r.to);
            const auto c = loader_choice(cur);
            if (c != before_choice && c != after_choice) return false;
        }
        return true;
    };
    if (safe(renames)) return renames;
    std::reverse(renames.begin(), renames.end());
    if (safe(renames)) return renames;
    return fail(Errc::unsupported,
                "no order of the renames in {} keeps systemd-boot starting slot {} or slot {} "
                "after each step",
                kUkiDir, before_choice ? name(*before_choice) : "-",
                after_choice ? name(*after_choice) : "-");
}

Result<UkiListing> SdBootControl::listing() {
    BALLAST_TRY_CTX(ukis_.tidy(), "{}", kUkiDir);
    auto files = BALLAST_TRY_CTX(ukis_.list(), "{}", kUkiDir);
    auto l = read_listing(files);
    if (l.aliases.empty() && l.strays.empty()) return l;
    for (const auto& a : l.aliases)
        BALLAST_TRY_CTX(ukis_.drop_alias(a), "{}/{}: drop the second name", kUkiDir, a);
    // Out of the loader's sight and of this backend's names, kept for whoever wants to look.
    // A put-aside cut after its new name was written left the same file under both: the old
    // name is then only dropped.
    for (const auto& stray : l.strays) {
        auto named = [&](const std::string& n) {
            return std::find_if(files.begin(), files.end(),
                                [&](const UkiStore::File& f) { return f.name == n; });
        };
        const auto self = named(stray);
        std::string aside = "stale-" + stray + ".off";
        for (int n = 1; named(aside) != files.end(); ++n) {
            const auto other = named(aside);
            if (self != files.end() && other->data == self->data && other->size == self->size)
                break;
            aside = fmt::format("stale-{}.{}.off", stray, n);
        }
        if (named(aside) != files.end())
            BALLAST_TRY_CTX(ukis_.drop_alias(stray), "{}/{}: drop the second name", kUkiDir, stray);
        else
            BALLAST_TRY_CTX(ukis_.rename(stray, aside), "{}/{}: put aside", kUkiDir, stray);
    }
    files = BALLAST_TRY_CTX(ukis_.list(), "{}", kUkiDir);
    return read_listing(files);
}

Status SdBootControl::rename_all(const std::vector<Rename>& renames) {
    for (const auto& r : renames)
        BALLAST_TRY_CTX(ukis_.rename(r.from, r.to), "{}: rename {} to {}", kUkiDir, r.from, r.to);
    return {};
}

Result<BootState> SdBootControl::load(bool repair) {
    const BootState record = BALLAST_TRY(record_.load(repair));
    if (!repair) {
        auto files = BALLAST_TRY_CTX(ukis_.list(), "{}", kUkiDir);
        return merge(record, read_listing(files));
    }
    auto l = BALLAST_TRY(listing());
    // The record is written first: finish the renames it asks for. When it asks for what the
    // names cannot give (its UKI gone), the names are what the loader follows: that is the
    // state, and nothing is written (the record stays for an operator to repair from).
    auto renames = plan(record, l);
    if (!renames) {
        spdlog::warn("boot control: {}", renames.error().what());
        return merge(record, l);
    }
    BALLAST_TRY(rename_all(*renames));
    l = BALLAST_TRY(listing());
    return merge(record, l);
}

Status SdBootControl::save(const BootState& s) {
    // The plan is checked before the record is written (after the listing's own repairs, which
    // change no slot's name).
    auto l = BALLAST_TRY(listing());
    auto renames = BALLAST_TRY(plan(s, l));
    BALLAST_TRY(record_.save(s));
    return rename_all(renames);
}

Status SdBootControl::initialize(const BootState& s) {
    auto l = BALLAST_TRY(listing());
    auto renames = BALLAST_TRY(plan(s, l));
    BALLAST_TRY(record_.initialize(s));
    return rename_all(renames);
}

}  // namespace ballast::boot
