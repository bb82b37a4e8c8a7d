#include "ballast/update/bundle.hpp"

#include <blkid/blkid.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ctime>
#include <filesystem>
#include <vector>

#include "ballast/core/atomic_file.hpp"
#include "ballast/core/cmdline.hpp"
#include "ballast/core/copy.hpp"
#include "ballast/core/duration.hpp"
#include "ballast/core/fd.hpp"
#include "ballast/core/process.hpp"
#include "ballast/core/sha256.hpp"
#include "ballast/core/temp_dir.hpp"
#include "ballast/crypt/verity.hpp"
#include "ballast/update/image_files.hpp"

namespace ballast::update {
namespace {

constexpr uint64_t kBlock = 512;

uint64_t octal(const char* p, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n && p[i]; ++i) {
        if (p[i] == ' ') continue;
        if (p[i] < '0' || p[i] > '7') break;
        v = v * 8 + uint64_t(p[i] - '0');
    }
    return v;
}

Result<std::map<std::string, Bundle::Member>> read_tar(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return fail_errno(errno, path);
    struct stat st {};
    ::fstat(fd.get(), &st);
    return parse_tar(path, path, uint64_t(st.st_size), [&](uint64_t off, char* h) -> Result<bool> {
        if (::pread(fd.get(), h, kBlock, off_t(off)) != ssize_t(kBlock))
            return fail_errno(errno, path);
        return true;
    });
}

Result<std::string> fs_type(const std::string& image) {
    blkid_probe pr = blkid_new_probe_from_filename(image.c_str());
    if (!pr) return fail_errno(errno, image);
    blkid_probe_enable_superblocks(pr, 1);
    blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE);
    std::string type;
    const char* t = nullptr;
    if (blkid_do_safeprobe(pr) == 0 && blkid_probe_lookup_value(pr, "TYPE", &t, nullptr) == 0)
        type = t;
    blkid_free_probe(pr);
    if (type != "squashfs" && type != "erofs")
        return fail(Errc::invalid_argument, "{}: not a squashfs or erofs image ({})", image,
                    type.empty() ? "no filesystem found" : type);
    return type;
}

// The image must carry what GRUB boots.
Status check_boot_files(const std::string& image, const std::string& type) {
    ProcessOptions p;
    if (type == "squashfs")
        p.argv = {"unsquashfs", "-lc", image, "boot"};
    else
        p.argv = {"dump.erofs", "--ls", "--path=/boot", image};
    p.timeout = std::chrono::seconds(120);
    auto r = run_process(p);
    if (!r)
        return std::unexpected(
            std::move(r.error()).context("list the image (install squashfs-tools / erofs-utils)"));
    for (const char* f : {"vmlinuz", "initrd.img"}) {
        bool found = false;
        size_t i = 0;
        while (i < r->out.size()) {
            size_t j = r->out.find('\n', i);
            if (j == std::string::npos) j = r->out.size();
            std::string line = r->out.substr(i, j - i);
            i = j + 1;
            if (line.size() >= std::string(f).size() &&
                line.compare(line.size() - std::string(f).size(), std::string::npos, f) == 0 &&
                (line.size() == std::string(f).size() ||
                 line[line.size() - std::string(f).size() - 1] == '/' ||
                 line[line.size() - std::string(f).size() - 1] == ' '))
                found = true;
        }
        if (!found)
            return fail(Errc::invalid_argument, "{}: has no /boot/{} (the kernel GRUB starts)",
                        image, f);
    }
    return {};
}

// A ustar header for a regular file.
std::string tar_header(const std::string& name, uint64_t size) {
    std::string h(kBlock, '\0');
    std::copy(name.begin(), name.end(), h.begin());
    auto put_octal = [&](size_t off, size_t len, uint64_t v) {
        std::string s = fmt::format("{:0{}o}", v, len - 1);
        std::copy(s.begin(), s.end(), h.begin() + long(off));
    };
    put_octal(100, 8, 0644);
    put_octal(108, 8, 0);
    put_octal(116, 8, 0);
    put_octal(124, 12, size);
    put_octal(136, 12, uint64_t(std::time(nullptr)));
    h[156] = '0';
    std::string magic = "ustar";
    std::copy(magic.begin(), magic.end(), h.begin() + 257);
    h[262] = '\0';
    h[263] = '0';
    h[264] = '0';
    std::fill(h.begin() + 148, h.begin() + 156, ' ');
    unsigned sum = 0;
    for (char c : h)
        sum += uint8_t(c);
    std::string cs = fmt::format("{:06o}", sum);
    std::copy(cs.begin(), cs.end(), h.begin() + 148);
    h[154] = '\0';
    h[155] = ' ';
    return h;
}

// A member the signed manifest pins, whole: its size and digest against the manifest. At most
// `max` bytes.
Result<std::string> read_pinned(const Bundle& b, const Manifest::Member& want, uint64_t max,
                                std::string_view what) {
    auto m = b.member(want.file);
    if (!m)
        return fail(Errc::invalid_argument, "{}: the {} {} named by the manifest is missing",
                    b.path(), what, want.file);
    if (m->size != want.size)
        return fail(Errc::verification, "{}: {} is {} bytes, the manifest says {}", b.path(),
                    want.file, m->size, want.size);
    if (m->size > max)
        return fail(Errc::verification, "{}: {} is {} bytes, more than a {} may have", b.path(),
                    want.file, m->size, what);
    UniqueFd fd(::open(m->path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return fail_errno(errno, m->path);
    std::string data(m->size, '\0');
    const ssize_t r = ::pread(fd.get(), data.data(), m->size, off_t(m->offset));
    if (r < 0) return fail_errno(errno, m->path);
    if (r != ssize_t(m->size))
        return fail(Errc::io, "{}: {} ends after {} of its {} bytes", b.path(), want.file, r,
                    m->size);
    if (const auto got = BALLAST_TRY(sha256_hex(data)); got != want.sha256)
        return fail(Errc::verification, "{}: {} sha256 {} does not match the manifest's {}",
                    b.path(), want.file, got, want.sha256);
    return data;
}

// The chunk index the signed manifest names: pinned, then its structure and the image size it
// describes.
Result<ChunkIndex> read_index(const Bundle& b, const Manifest& manifest) {
    const auto& want = *manifest.index;
    const std::string data = BALLAST_TRY(read_pinned(b, want, kMaxIndexSize, "chunk index"));
    auto idx = BALLAST_TRY(parse_index(data, fmt::format("{}: {}", b.path(), want.file)));
    if (idx.image_size != manifest.image.size)
        return fail(Errc::verification,
                    "{}: {} describes an image of {} bytes, the manifest's is {}", b.path(),
                    want.file, idx.image_size, manifest.image.size);
    return idx;
}

// The release's UKI: pinned, a systemd-stub 252 image, for this image (its command line names
// the manifest's root hash and hash offset, once each), and signed for enter-initrd by its own
// PCR key, or the node's sealed keys would not open on its first boot.
Result<UkiInspection> read_uki(const Bundle& b, const Manifest& manifest) {
    const auto& want = *manifest.uki;
    const std::string data = BALLAST_TRY(read_pinned(b, want, kMaxUkiSize, "UKI"));
    const auto what = fmt::format("{}: {}", b.path(), want.file);
    auto u = BALLAST_TRY(inspect_uki_image(data, what));
    BALLAST_TRY(check_uki_cmdline(u.cmdline, *manifest.verity, what));
    if (!u.signed_for_enter_initrd)
        return fail(Errc::verification,
                    "{}: .pcrsig holds no valid signature by the UKI's own .pcrpkey for its PCR 11 "
                    "at enter-initrd ({}): keys sealed to that key would not open",
                    what, u.pcr11_enter_initrd);
    return u;
}

}  // namespace

Status check_uki_cmdline(std::string_view cmdline, const crypt::Verity& v, std::string_view what) {
    const auto words = parse_cmdline(cmdline);
    const auto want = parse_cmdline(uki_root_hash_words(v));
    for (const auto& w : want) {
        const auto n = std::ranges::count_if(words, [&](const auto& g) { return g.key == w.key; });
        const auto it = std::ranges::find_if(words, [&](const auto& g) { return g.key == w.key; });
        if (n != 1 || it->value != w.value)
            return fail(Errc::verification,
                        "{}: the command line must name the image's {} once, as {}={} ({})", what,
                        w.key, w.key, *w.value,
                        n == 0  ? "missing"
                        : n > 1 ? "given more than once"
                                : "it differs");
    }
    // Any other word about the root hash (systemd's, an rd. one, a spelling with '-') would
    // race the initramfs for the device or tell it another story.
    for (const auto& g : words)
        if (names_root_hash(g.key) &&
            std::ranges::none_of(want, [&](const auto& w) { return w.key == g.key; }))
            return fail(Errc::verification,
                        "{}: the command line also names '{}', which is Ballast's to set", what,
                        g.key);
    return {};
}

Result<std::map<std::string, Bundle::Member>> parse_tar(const std::string& where,
                                                        const std::string& member_path,
                                                        uint64_t total,
                                                        const TarHeaderReader& read) {
    std::map<std::string, Bundle::Member> out;
    uint64_t off = 0;
    char h[kBlock];
    while (off + kBlock <= total) {
        if (!BALLAST_TRY(read(off, h))) break;
        bool zero = true;
        for (char c : h)
            zero = zero && c == 0;
        if (zero) break;
        if (std::string_view(h + 257, 5) != "ustar")
            return fail(Errc::parse, "{}: not a tar file (no ustar header at {})", where, off);
        std::string name(h, strnlen(h, 100));
        std::string prefix(h + 345, strnlen(h + 345, 155));
        if (!prefix.empty()) name = prefix + "/" + name;
        while (name.rfind("./", 0) == 0)
            name = name.substr(2);
        const uint64_t size = octal(h + 124, 12);
        const char type = h[156];
        off += kBlock;
        if (off + size > total)
            return fail(Errc::parse, "{}: member {} is truncated ({} bytes of {})", where, name,
                        total - off, size);
        if ((type == '0' || type == '\0') && !name.empty()) {
            if (out.count(name))
                return fail(Errc::parse, "{}: member {} appears twice", where, name);
            out[name] = {member_path, off, size};
        }
        off += (size + kBlock - 1) / kBlock * kBlock;
    }
    return out;
}

Bundle Bundle::from_members(std::string path, bool tar, std::map<std::string, Member> members) {
    Bundle b;
    b.path_ = std::move(path);
    b.tar_ = tar;
    b.members_ = std::move(members);
    return b;
}

Result<Bundle> Bundle::open(const std::string& path) {
    Bundle b;
    b.path_ = path;
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) {
        for (const auto& e : std::filesystem::directory_iterator(path, ec)) {
            if (!e.is_regular_file(ec)) continue;
            b.members_[e.path().filename()] = {e.path().string(), 0, uint64_t(e.file_size(ec))};
        }
        return b;
    }
    if (!std::filesystem::exists(path, ec))
        return fail(Errc::not_found, "{}: no such bundle", path);
    b.tar_ = true;
    b.members_ = BALLAST_TRY_CTX(read_tar(path), "bundle");
    return b;
}

std::optional<Bundle::Member> Bundle::member(const std::string& name) const {
    auto it = members_.find(name);
    if (it == members_.end()) return std::nullopt;
    return it->second;
}

Result<std::optional<std::string>> Bundle::read_small(const std::string& name) const {
    auto m = member(name);
    if (!m) return std::optional<std::string>();
    if (m->size > (1u << 20))
        return fail(Errc::invalid_argument, "{}: {} is larger than 1 MiB", path_, name);
    UniqueFd fd(::open(m->path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return fail_errno(errno, m->path);
    std::string data(m->size, '\0');
    if (m->size && ::pread(fd.get(), data.data(), m->size, off_t(m->offset)) != ssize_t(m->size))
        return fail_errno(errno, m->path);
    return std::optional<std::string>(std::move(data));
}

Result<Checked> check_parts(
    const std::string& where, const std::optional<std::string>& manifest_text,
    const std::optional<std::string>& sig,
    const std::function<std::optional<Bundle::Member>(const std::string&)>& member,
    const std::string& keyring_pem) {
    if (!manifest_text)
        return fail(Errc::invalid_argument, "{}: not a bundle (no {})", where, kManifestName);
    if (!sig) return fail(Errc::verification, "{}: unsigned bundle (no {})", where, kSignatureName);
    Checked c;
    c.signer = BALLAST_TRY_CTX(verify(*manifest_text, *sig, keyring_pem), "{}", where);
    c.manifest = BALLAST_TRY_CTX(parse_manifest(*manifest_text), "{}", where);
    c.manifest_sha256 = BALLAST_TRY(sha256_hex(*manifest_text));
    auto img = member(c.manifest.image.file);
    if (!img)
        return fail(Errc::invalid_argument, "{}: the image {} named by the manifest is missing",
                    where, c.manifest.image.file);
    if (img->size < c.manifest.image.size)
        return fail(Errc::verification, "{}: truncated image: {} is {} bytes, the manifest says {}",
                    where, c.manifest.image.file, img->size, c.manifest.image.size);
    if (img->size > c.manifest.image.size)
        return fail(Errc::verification, "{}: {} is {} bytes, more than the {} the manifest says",
                    where, c.manifest.image.file, img->size, c.manifest.image.size);
    c.image = *img;
    return c;
}

Result<Manifest> read_manifest(const Bundle& b) {
    const auto text = BALLAST_TRY(b.read_small(kManifestName));
    if (!text)
        return fail(Errc::invalid_argument, "{}: not a bundle (no {})", b.path(), kManifestName);
    return BALLAST_TRY_CTX(parse_manifest(*text), "{}", b.path());
}

Result<Checked> check_bundle(const Bundle& b, const std::string& keyring_pem) {
    auto manifest_text = BALLAST_TRY(b.read_small(kManifestName));
    if (!manifest_text)
        return fail(Errc::invalid_argument, "{}: not a bundle (no {})", b.path(), kManifestName);
    auto sig = BALLAST_TRY(b.read_small(kSignatureName));
    auto c = BALLAST_TRY(check_parts(
        b.path(), manifest_text, sig, [&](const std::string& n) { return b.member(n); },
        keyring_pem));
    // Only a local bundle is held whole: an https source reads the tar's first bytes, before
    // the index.
    if (c.manifest.index) c.index = BALLAST_TRY(read_index(b, c.manifest));
    if (c.manifest.uki) c.uki = BALLAST_TRY(read_uki(b, c.manifest));
    return c;
}

Status check_bootable(const Checked& c, const std::string& where) {
    if (c.manifest.image.fstype != "squashfs")
        return fail(
            Errc::unsupported,
            "{}: a {} image cannot boot: GRUB 2.06 (Debian 12) reads squashfs slots, not {}", where,
            c.manifest.image.fstype, c.manifest.image.fstype);
    return {};
}

Status verify_image(const Checked& c, const std::function<void(uint64_t, uint64_t)>& progress,
                    const ChunkIndex* index) {
    UniqueFd fd(::open(c.image.path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return fail_errno(errno, c.image.path);
    ::posix_fadvise(fd.get(), off_t(c.image.offset), off_t(c.image.size), POSIX_FADV_SEQUENTIAL);
    auto h = BALLAST_TRY(Sha256::make());
    // The chunk being hashed, when an index is checked too, and the first that differed.
    size_t chunk = 0;
    uint64_t chunk_done = 0;
    std::optional<size_t> bad;
    auto ch = BALLAST_TRY(Sha256::make());
    std::vector<uint8_t> buf(4u << 20);
    uint64_t done = 0;
    while (done < c.image.size) {
        size_t n = size_t(std::min<uint64_t>(buf.size(), c.image.size - done));
        ssize_t r = ::pread(fd.get(), buf.data(), n, off_t(c.image.offset + done));
        if (r < 0) return fail_errno(errno, c.image.path);
        if (r == 0)
            return fail(Errc::verification, "{}: truncated image at {} bytes", c.image.path, done);
        std::span<const uint8_t> got(buf.data(), size_t(r));
        h.update(got);
        while (index && !got.empty() && chunk < index->chunks.size()) {
            const auto& want = index->chunks[chunk];
            const size_t k = size_t(std::min<uint64_t>(got.size(), want.length - chunk_done));
            ch.update(got.first(k));
            got = got.subspan(k);
            chunk_done += k;
            if (chunk_done < want.length) continue;
            if (ch.digest() != want.sha256 && !bad) bad = chunk;
            ch = BALLAST_TRY(Sha256::make());
            ++chunk;
            chunk_done = 0;
        }
        done += uint64_t(r);
        if (progress) progress(done, c.image.size);
    }
    auto where = [&] {
        const auto& k = index->chunks[*bad];
        return fmt::format("chunk {}, bytes {}..{}", *bad, k.offset, k.offset + k.length);
    };
    auto digest = h.hex();
    if (digest != c.manifest.image.sha256)
        return fail(Errc::verification, "image sha256 {} does not match the manifest's {}{}",
                    digest, c.manifest.image.sha256,
                    bad ? fmt::format(" (first difference in {})", where()) : "");
    if (bad)
        return fail(Errc::verification, "the chunk index does not describe the image ({} differs)",
                    where());
    return {};
}

namespace {

// `image` copied to `out`, zero-padded to whole verity blocks, the hash tree after it.
Result<crypt::Verity> with_verity(const std::string& image, const std::string& out) {
    UniqueFd in(::open(image.c_str(), O_RDONLY | O_CLOEXEC));
    if (!in) return fail_errno(errno, image);
    struct stat st {};
    if (::fstat(in.get(), &st) < 0) return fail_errno(errno, image);
    const uint64_t size = uint64_t(st.st_size);
    const uint64_t data =
        (size + crypt::kVerityBlock - 1) / crypt::kVerityBlock * crypt::kVerityBlock;
    {
        UniqueFd dst(::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
        if (!dst) return fail_errno(errno, out);
        BALLAST_TRY(copy_bytes(in.get(), 0, size, dst.get(), out));
        if (::ftruncate(dst.get(), off_t(data)) < 0) return fail_errno(errno, out);
    }
    return crypt::verity_format(out, data, data);
}

// What `--uki-cmdline` may hold: printable words, none of them naming the root hash.
Status check_uki_words(std::string_view words) {
    if (std::ranges::any_of(words, [](unsigned char c) { return c < 0x20 || c >= 0x7f; }))
        return fail(Errc::invalid_argument,
                    "--uki-cmdline: one line of printable ASCII words, without control characters");
    for (const auto& w : parse_cmdline(words))
        if (names_root_hash(w.key))
            return fail(Errc::invalid_argument,
                        "--uki-cmdline: '{}' is not yours to set: the UKI names the image's root "
                        "hash itself",
                        w.key);
    return {};
}

// The release's UKI in `scratch`/uki.efi, its command line tying it to the image's hash tree.
uint64_t file_size_or_zero(const std::string& path) {
    std::error_code ec;
    const auto n = std::filesystem::file_size(path, ec);
    return ec ? 0 : uint64_t(n);
}

Result<UkiBuilt> build_release_uki(const CreateOptions::Uki& u, const std::string& image,
                                   const std::string& fstype, const crypt::Verity& v,
                                   const std::string& scratch) {
    UkiBuildOptions b = u.build;
    if (b.linux_image.empty() || b.initrd.empty() || b.os_release.empty()) {
        const std::string dir = scratch + "/image-files";
        if (::mkdir(dir.c_str(), 0700) < 0) return fail_errno(errno, dir);
        const auto f = BALLAST_TRY(extract_boot_files(image, fstype, dir));
        // Only what was not given must be found in the image.
        if (b.linux_image.empty()) b.linux_image = BALLAST_TRY(f.linux_image);
        if (b.initrd.empty()) b.initrd = BALLAST_TRY(f.initrd);
        if (b.os_release.empty()) b.os_release = BALLAST_TRY(f.os_release);
    }
    b.cmdline = scratch + "/cmdline";
    BALLAST_TRY(write_file_atomic(
        b.cmdline, uki_root_hash_words(v) + (u.cmdline.empty() ? "" : " " + u.cmdline)));
    b.output = scratch + "/" + kUkiName;
    const auto built = BALLAST_TRY(build_uki(b));
    if (built.size > kMaxUkiSize)
        return fail(Errc::invalid_argument,
                    "{} bytes, over the {} MiB two of which must fit the ESP (kernel {} bytes, "
                    "initrd {} bytes): make the initrd smaller, or give a smaller one with "
                    "--initrd",
                    built.size, kMaxUkiSize >> 20, file_size_or_zero(b.linux_image),
                    file_size_or_zero(b.initrd));
    return built;
}

}  // namespace

Result<Manifest> create_bundle(const CreateOptions& o) {
    auto type = BALLAST_TRY(fs_type(o.image));
    BALLAST_TRY(check_boot_files(o.image, type));
    if (o.version.empty() || o.compatible.empty())
        return fail(Errc::invalid_argument, "--version and --compatible are required");
    if (o.uki && !o.verity)
        return fail(Errc::invalid_argument,
                    "--uki needs --verity: the UKI's command line carries the image's root hash");
    // The cheap mistakes before the image is read.
    if (o.uki) BALLAST_TRY(check_uki_words(o.uki->cmdline));
    const bool tar = o.out.size() > 4 && o.out.compare(o.out.size() - 4, 4, ".tar") == 0;
    // With verity the bundle's image is a copy, the tree appended: made beside the output.
    std::optional<TempDir> scratch;
    std::optional<crypt::Verity> verity;
    std::string image = o.image;
    if (o.verity) {
        const auto out = std::filesystem::path(o.out);
        const auto base = tar ? out.parent_path() : out;
        std::error_code ec;
        std::filesystem::create_directories(base.empty() ? "." : base, ec);
        if (ec) return fail_errno(ec.value(), base.string());
        auto made = TempDir::make("bundle", base.empty() ? "." : base.string());
        if (!made) return std::unexpected(made.error());
        scratch.emplace(std::move(*made));
        image = scratch->path() + "/rootfs.img";
        verity = BALLAST_TRY_CTX(with_verity(o.image, image), "{}", o.image);
    }
    std::optional<Manifest::Member> uki;
    if (o.uki) {
        const auto built = BALLAST_TRY_CTX(
            build_release_uki(*o.uki, o.image, type, *verity, scratch->path()), "UKI");
        uki = Manifest::Member{kUkiName, built.size, built.sha256};
    }
    UniqueFd img(::open(image.c_str(), O_RDONLY | O_CLOEXEC));
    if (!img) return fail_errno(errno, image);
    struct stat st {};
    ::fstat(img.get(), &st);
    Manifest m;
    m.verity = verity;
    m.uki = uki;
    m.os_name = o.os_name;
    m.version = o.version;
    m.compatible = o.compatible;
    m.image.file = "rootfs.img";
    m.image.size = uint64_t(st.st_size);
    m.image.fstype = type;
    m.created = now_utc();
    // One pass: the whole image's digest and, unless refused, its chunk index.
    auto h = BALLAST_TRY(Sha256::make());
    auto read = [&](uint64_t off, uint8_t* buf, size_t n) -> Result<size_t> {
        ssize_t r = ::pread(img.get(), buf, n, off_t(off));
        if (r < 0) return fail_errno(errno, o.image);
        h.update(std::span<const uint8_t>(buf, size_t(r)));
        return size_t(r);
    };
    std::string index;
    if (o.no_index) {
        std::vector<uint8_t> buf(4u << 20);
        for (uint64_t done = 0; done < m.image.size;) {
            const size_t r = BALLAST_TRY(read(done, buf.data(), buf.size()));
            if (r == 0) return fail_errno(EIO, o.image);
            done += r;
        }
    } else {
        index = serialize_index(BALLAST_TRY_CTX(build_index(m.image.size, read), "{}", o.image));
        const std::string index_sha256 = BALLAST_TRY(sha256_hex(index));
        m.index = Manifest::Index{kIndexName, index.size(), index_sha256};
    }
    m.image.sha256 = h.hex();
    const std::string manifest = serialize_manifest(m);
    // The manifest must parse back: what is signed is what a node accepts.
    BALLAST_TRY(parse_manifest(manifest));
    const std::string sig = BALLAST_TRY(sign(manifest, o.cert, o.key, o.chain));
    if (!tar) {
        std::error_code ec;
        std::filesystem::create_directories(o.out, ec);
        if (ec) return fail_errno(ec.value(), o.out);
        // The index before the manifest that names it.
        const auto index_path = std::filesystem::path(o.out) / kIndexName;
        if (m.index)
            BALLAST_TRY(write_file_atomic(index_path, index));
        else
            std::filesystem::remove(index_path, ec);
        // The UKI too, from the scratch folder beside it (build_uki() synced it): nothing in
        // the folder changes before the new manifest is signed.
        const auto uki_path = std::filesystem::path(o.out) / kUkiName;
        if (m.uki) {
            const std::string from = scratch->path() + "/" + kUkiName;
            if (::rename(from.c_str(), uki_path.c_str()) < 0)
                return fail_errno(errno, uki_path.string());
            BALLAST_TRY(fsync_parent_dir(uki_path));
        } else {
            std::filesystem::remove(uki_path, ec);
        }
        BALLAST_TRY(write_file_atomic(std::filesystem::path(o.out) / kManifestName, manifest));
        BALLAST_TRY(write_file_atomic(std::filesystem::path(o.out) / kSignatureName, sig));
        auto dst = std::filesystem::path(o.out) / m.image.file;
        std::filesystem::remove(dst, ec);
        if (scratch) {
            // A tar output copies the scratch image and drops it: only this one is synced.
            if (::fsync(img.get()) < 0 || ::rename(image.c_str(), dst.c_str()) < 0)
                return fail_errno(errno, dst.string());
            return m;
        }
        // A hard link when possible (same filesystem): a bundle folder costs no copy.
        if (::link(o.image.c_str(), dst.c_str()) != 0) {
            const std::string tmp = dst.string() + ".tmp";
            UniqueFd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
            if (!out) return fail_errno(errno, tmp);
            BALLAST_TRY(copy_bytes(img.get(), 0, m.image.size, out.get(), tmp));
            if (::fsync(out.get()) < 0 || ::rename(tmp.c_str(), dst.c_str()) < 0)
                return fail_errno(errno, dst.string());
        }
        return m;
    }
    const std::string tmp = o.out + ".tmp";
    UniqueFd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!out) return fail_errno(errno, tmp);
    auto put = [&](const std::string& data) -> Status {
        if (::write(out.get(), data.data(), data.size()) != ssize_t(data.size()))
            return fail_errno(errno, tmp);
        return {};
    };
    auto pad = [&](uint64_t size) {
        return put(std::string((kBlock - size % kBlock) % kBlock, '\0'));
    };
    for (const auto& [name, data] :
         {std::pair<std::string, const std::string*>{kManifestName, &manifest},
          {kSignatureName, &sig}}) {
        BALLAST_TRY(put(tar_header(name, data->size())));
        BALLAST_TRY(put(*data));
        BALLAST_TRY(pad(data->size()));
    }
    BALLAST_TRY(put(tar_header(m.image.file, m.image.size)));
    BALLAST_TRY(copy_bytes(img.get(), 0, m.image.size, out.get(), tmp));
    BALLAST_TRY(pad(m.image.size));
    if (m.index) {
        BALLAST_TRY(put(tar_header(kIndexName, index.size())));
        BALLAST_TRY(put(index));
        BALLAST_TRY(pad(index.size()));
    }
    if (m.uki) {
        const std::string from = scratch->path() + "/" + kUkiName;
        UniqueFd u(::open(from.c_str(), O_RDONLY | O_CLOEXEC));
        if (!u) return fail_errno(errno, from);
        BALLAST_TRY(put(tar_header(kUkiName, m.uki->size)));
        BALLAST_TRY(copy_bytes(u.get(), 0, m.uki->size, out.get(), tmp));
        BALLAST_TRY(pad(m.uki->size));
    }
    BALLAST_TRY(put(std::string(2 * kBlock, '\0')));
    if (::fsync(out.get()) < 0 || ::rename(tmp.c_str(), o.out.c_str()) < 0)
        return fail_errno(errno, o.out);
    return m;
}

std::string default_keyring(const std::string& root) {
    const std::filesystem::path r(root);
    std::error_code ec;
    auto etc = r / "etc/ballast/keyring.pem";
    if (std::filesystem::exists(etc, ec)) return etc;
    return r / "usr/share/ballast/keyring.pem";
}

}  // namespace ballast::update
