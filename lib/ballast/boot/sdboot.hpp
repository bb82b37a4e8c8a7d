// The systemd-boot boot-control backend (../shared/specs/ab-update.md, verified-boot.md section 4).
//
// What the loader reads: each slot's release UKI in /EFI/Linux, named
//   ballast-a.efi       good: started when it sorts first
//   ballast-a+L-D.efi   counted: L tries left. The loader renames it to +(L-1)-(D+1) before each
//                       try and sorts it last once L is 0. A slot on trial; or, with L = 0, a
//                       good slot held behind the primary one because the loader would otherwise
//                       sort it first (its os-release version is newer); or a trial that ran out.
//   ballast-a.off       not listed: marked bad, emptied for a write, or not yet activated
// No default entry is ever set, so a bad entry is never pinned by name: the loader starts the
// first entry of its own order (sdboot_menu.hpp), and the names alone make that the slot decide()
// chose, with the other slot next once a trial's tries are spent.
//
// What only the agent reads: its record of the BootState (versions, last good slot, a reset in
// progress), in a two-copy environment block with GRUB's protocol (grub.hpp), which the loader
// never writes.
//
// Write order: save() writes the record (the commit point), then renames one file at a time, in
// an order checked against the loader's model so that after every rename the loader starts what
// it started before or what it starts after; load() finishes the renames the record asks for. The
// tries left are the loader's: read from the names, never written back over.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ballast/boot/control.hpp"
#include "ballast/boot/efivars.hpp"
#include "ballast/boot/grub.hpp"
#include "ballast/boot/sdboot_menu.hpp"

namespace ballast::boot {

inline constexpr const char* kUkiDir = "/EFI/Linux";

// The UKI files of /EFI/Linux: a FAT directory on the ESP, or memory in tests.
class UkiStore {
  public:
    struct File {
        std::string name;                          // in /EFI/Linux
        std::optional<sdboot::Identity> identity;  // from its .osrel; nullopt: the loader skips it
        uint64_t data = 0;  // where its data starts (two names with the same: one file)
        uint64_t size = 0;
    };
    virtual ~UkiStore() = default;
    [[nodiscard]] virtual Result<std::vector<File>> list() = 0;
    // Renames within /EFI/Linux; durable before it returns.
    [[nodiscard]] virtual Status rename(const std::string& from, const std::string& to) = 0;
    // Drops the name `alias` of a file that is also under another name (a rename cut between
    // its two directory writes), leaving the data to the other name.
    [[nodiscard]] virtual Status drop_alias(const std::string& alias) = 0;
    // Clears what a cut write left that no reader uses (orphaned long-name pieces); nothing is
    // written when there is none.
    [[nodiscard]] virtual Status tidy() = 0;
};

// "ballast-a.efi", "ballast-a+3-0.efi", "ballast-a.off".
[[nodiscard]] std::string uki_name(Slot s, std::optional<sdboot::Counter> counter);
[[nodiscard]] std::string hidden_uki_name(Slot s);

// The slot of one of this backend's names ("ballast-b+3-0.efi", any case); nullopt for others.
[[nodiscard]] std::optional<Slot> slot_of_uki_name(std::string_view file);
// The slot the running system was started from by systemd-boot: its LoaderEntrySelected (the
// entry's id, the file name as it was before the try was counted). nullopt when the variable is
// not there or names no slot of this backend.
[[nodiscard]] Result<std::optional<Slot>> booted_slot_from_loader(
    const std::string& efivars = kEfivars);

// /EFI/Linux as this backend reads it.
struct UkiListing {
    struct SlotFile {
        std::string name;
        bool listed = false;  // the loader lists it (.efi with an .osrel identity)
        std::optional<sdboot::Counter> counter;
        std::optional<sdboot::Identity> identity;  // nullopt: no usable .osrel
    };
    std::array<std::optional<SlotFile>, 2> slots;  // A, B
    std::vector<sdboot::Entry> foreign;            // other listed UKIs: they are in the menu too
    std::vector<std::string> aliases;              // second names of a slot's file (cut renames)
    std::vector<std::string> strays;  // other files under a slot's names (stale copies)
    [[nodiscard]] const std::optional<SlotFile>& at(Slot s) const {
        return slots[s == Slot::A ? 0 : 1];
    }
};
[[nodiscard]] UkiListing read_listing(const std::vector<UkiStore::File>& files);

// What the loader starts with these names: a slot, or nullopt (a foreign entry, or nothing
// listed; `foreign` names the entry when there is one).
[[nodiscard]] std::optional<Slot> loader_choice(const UkiListing& l,
                                                std::string* foreign = nullptr);

// The state the names give effect to, with the agent's record for what names cannot hold
// (versions, last good, reset; whether a spent counter is a trial that ran out or a good slot held
// back). A slot whose file is missing or not listed is not bootable.
[[nodiscard]] BootState merge(const BootState& record, const UkiListing& l);

struct Rename {
    std::string from, to;
    bool operator==(const Rename&) const = default;
};
// The renames that make the names say `s`, in a safe order; refused (nothing to do) when the
// loader could not be made to start what decide() decides, before and after a trial's tries are
// spent: a slot to boot has no UKI, a foreign UKI sorts first, or a one-shot recovery (the
// systemd-boot backend has no recovery entry yet).
[[nodiscard]] Result<std::vector<Rename>> plan(const BootState& s, const UkiListing& l);

class SdBootControl final : public BootControl {
  public:
    SdBootControl(EnvStore& record, UkiStore& ukis) : record_(record), ukis_(ukis) {}

    [[nodiscard]] std::string_view backend() const override { return "systemd-boot"; }
    [[nodiscard]] Result<BootState> load(bool repair = true) override;
    [[nodiscard]] Status save(const BootState& s) override;
    [[nodiscard]] Status initialize(const BootState& s) override;

  private:
    [[nodiscard]] Result<UkiListing> listing();
    [[nodiscard]] Status rename_all(const std::vector<Rename>& renames);
    GrubBootControl record_;
    UkiStore& ukis_;
};

}  // namespace ballast::boot
