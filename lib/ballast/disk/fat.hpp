// Reading files of a FAT12/16/32 filesystem and rewriting one in place, on a byte range, with
// no mount: how Ballast reaches the boot state on the ESP. In-place rewriting of a file's own
// clusters is exactly what GRUB's save_env does, and the FAT itself is never changed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ballast/core/result.hpp"
#include "ballast/disk/range.hpp"

namespace ballast::disk {

class FatVolume {
  public:
    // `range` must outlive the volume.
    [[nodiscard]] static Result<FatVolume> open(const ByteRange& range);

    struct Extent {
        uint64_t offset;  // within the range
        uint64_t length;
    };
    struct File {
        uint32_t size = 0;
        std::vector<Extent> extents;  // the file's data, in order, exactly `size` bytes
    };
    // "/grub/env1/grubenv": long names (case-insensitive) or 8.3 names.
    [[nodiscard]] Result<File> find(std::string_view path) const;
    [[nodiscard]] Result<std::string> read(std::string_view path) const;
    // At most `length` bytes from `offset` (fewer past the end of the file).
    [[nodiscard]] Result<std::string> read_range(std::string_view path, uint64_t offset,
                                                 uint64_t length) const;

    struct DirEntry {
        std::string name;  // long name, else 8.3
        bool dir = false;
        uint32_t size = 0;
        uint32_t cluster = 0;  // the first
    };
    // The entries of a folder ("/EFI/Linux"; "" or "/" for the root), "." and ".." left out.
    [[nodiscard]] Result<std::vector<DirEntry>> list(std::string_view dir_path) const;
    // At most `length` bytes from `offset` of the file a folder listing gave.
    [[nodiscard]] Result<std::string> read_entry(const DirEntry& e, uint64_t offset,
                                                 uint64_t length) const;
    // Removes the directory entry `name` of `dir_path` when another entry there holds the same
    // data (same first cluster and size: a rename cut between its two directory writes), with
    // no change to the FAT, so the data stays the other name's. Anything else is refused.
    [[nodiscard]] Status drop_alias(std::string_view dir_path, std::string_view name) const;
    // Renames a file within its folder with no change to the FAT: the new name's entries are
    // written into free slots and synced, then the old ones freed as drop_alias() frees them.
    // A cut leaves the old name, both names, or the new one; never none. `to`: a plain ASCII
    // long name; Errc::exists when taken, Errc::unsupported when the folder has no free slots
    // (it is not extended).
    [[nodiscard]] Status rename(std::string_view dir_path, std::string_view from,
                                std::string_view to) const;
    // Frees the long-name pieces of `dir_path` that belong to no entry (what a cut rename or
    // removal leaves: every reader skips them, fsck reports them). How many there were.
    [[nodiscard]] Result<size_t> free_orphans(std::string_view dir_path) const;
    // Overwrites the file's bytes; `data` must be exactly the file's size. Synced.
    [[nodiscard]] Status write_in_place(std::string_view path, std::string_view data) const;

    [[nodiscard]] int fat_bits() const { return bits_; }

  private:
    explicit FatVolume(const ByteRange& r) : range_(&r) {}
    struct Entry {
        std::string name;  // long name, else 8.3 ("GRUBENV", "BOOTX64.EFI")
        bool dir = false;
        uint32_t cluster = 0;
        uint32_t size = 0;
        size_t first_slot = 0, short_slot = 0;  // byte offsets in the folder's data
        std::string short_name;                 // the 11 bytes
    };
    [[nodiscard]] Result<File> extents_of(uint32_t cluster, uint32_t size,
                                          std::string_view what) const;
    [[nodiscard]] Result<std::string> read_extents(const File& f, uint64_t offset,
                                                   uint64_t length) const;
    [[nodiscard]] Status free_entry(uint32_t dir, const Entry& e) const;
    [[nodiscard]] static std::vector<Entry> parse_dir(const std::string& data);
    [[nodiscard]] static std::vector<size_t> orphan_pieces(const std::string& data,
                                                           const std::vector<Entry>& entries);
    [[nodiscard]] static std::vector<std::string> split(std::string_view path);
    [[nodiscard]] Result<uint32_t> folder(std::string_view path) const;  // 0: the root
    [[nodiscard]] Result<uint64_t> dir_offset(uint32_t dir, size_t offset) const;
    [[nodiscard]] Result<uint32_t> next_cluster(uint32_t c) const;
    [[nodiscard]] Result<std::vector<uint32_t>> chain(uint32_t first) const;
    [[nodiscard]] Result<std::string> read_dir(uint32_t cluster) const;  // 0: the root directory
    [[nodiscard]] uint64_t cluster_offset(uint32_t c) const;

    const ByteRange* range_;
    int bits_ = 0;
    uint32_t bytes_per_sector_ = 0, sectors_per_cluster_ = 0, reserved_ = 0, num_fats_ = 0;
    uint32_t root_entries_ = 0, fat_sectors_ = 0, total_sectors_ = 0, root_cluster_ = 0;
    uint64_t fat_offset_ = 0, root_offset_ = 0, data_offset_ = 0;
    uint32_t clusters_ = 0;
};

}  // namespace ballast::disk
