#include "ballast/crypt/luks.hpp"

#include <cerrno>
#include <cstring>

#include "ballast/crypt/cryptsetup_api.hpp"

namespace ballast::crypt {

struct Luks::Device : cs::Device {};

Luks::Luks(std::unique_ptr<Device> d, std::string path)
    : d_(std::move(d)), path_(std::move(path)) {}
Luks::Luks(Luks&&) noexcept = default;
Luks& Luks::operator=(Luks&&) noexcept = default;
Luks::~Luks() = default;

namespace {

Result<std::unique_ptr<Luks::Device>> init(const std::string& path) {
    auto d = std::make_unique<Luks::Device>();
    d->api = BALLAST_TRY(cs::api());
    if (int r = d->api->crypt_init(&d->cd, path.c_str()); r < 0) return fail_errno(r, path);
    return d;
}

// systemd's cryptsetup_set_minimal_pbkdf.
constexpr crypt_pbkdf_type minimal_pbkdf = {
    .type = CRYPT_KDF_PBKDF2,
    .hash = "sha512",
    .time_ms = 0,
    .iterations = 1000,
    .max_memory_kb = 0,
    .parallel_threads = 0,
    .flags = CRYPT_PBKDF_NO_BENCHMARK,
};

}  // namespace

Result<Luks> Luks::format(const std::string& path, const SecretBytes& volume_key,
                          std::string_view label) {
    auto d = BALLAST_TRY(init(path));
    std::string lbl(label);
    crypt_params_luks2 params{};
    params.label = lbl.empty() ? nullptr : lbl.c_str();
    params.sector_size = 512;
    if (int r = d->api->crypt_set_pbkdf_type(d->cd, &minimal_pbkdf); r < 0)
        return fail_errno(r, path + ": set PBKDF");
    if (int r = d->api->crypt_format(d->cd, CRYPT_LUKS2, "aes", "xts-plain64", nullptr,
                                     reinterpret_cast<const char*>(volume_key.data()),
                                     volume_key.size(), &params);
        r < 0)
        return fail_errno(r, path + ": write a LUKS2 header");
    return Luks(std::move(d), path);
}

Result<Luks> Luks::open(const std::string& path) {
    auto d = BALLAST_TRY(init(path));
    if (int r = d->api->crypt_load(d->cd, CRYPT_LUKS2, nullptr); r < 0) {
        if (r == -EINVAL) return fail(Errc::not_found, "{}: no LUKS2 header", path);
        return fail_errno(r, path + ": read the LUKS2 header");
    }
    return Luks(std::move(d), path);
}

std::string Luks::uuid() const {
    const char* u = d_->api->crypt_get_uuid(d_->cd);
    return u ? u : "";
}

size_t Luks::volume_key_size() const {
    int n = d_->api->crypt_get_volume_key_size(d_->cd);
    return n > 0 ? size_t(n) : 0;
}

uint64_t Luks::data_offset() const {
    return d_->api->crypt_get_data_offset(d_->cd) * 512;
}

Result<SecretBytes> Luks::volume_key(std::string_view passphrase) {
    SecretBytes vk(volume_key_size() ? volume_key_size() : 64);
    size_t size = vk.size();
    int r =
        d_->api->crypt_volume_key_get(d_->cd, CRYPT_ANY_SLOT, reinterpret_cast<char*>(vk.data()),
                                      &size, passphrase.data(), passphrase.size());
    if (r == -EPERM)
        return fail(Errc::permission_denied, "{}: no keyslot opens with that key", path_);
    if (r < 0) return fail_errno(r, path_ + ": get the volume key");
    if (size != vk.size()) return SecretBytes(vk.data(), size);
    return vk;
}

Result<int> Luks::check_passphrase(std::string_view passphrase, int keyslot) {
    int r = d_->api->crypt_activate_by_passphrase(d_->cd, nullptr, keyslot, passphrase.data(),
                                                  passphrase.size(), 0);
    if (r == -EPERM)
        return fail(Errc::permission_denied, "{}: no keyslot opens with that key", path_);
    if (r < 0) return fail_errno(r, path_ + ": check the key");
    return r;
}

Status Luks::activate(const std::string& name, std::string_view passphrase, int keyslot) {
    int r = d_->api->crypt_activate_by_passphrase(d_->cd, name.c_str(), keyslot, passphrase.data(),
                                                  passphrase.size(), 0);
    if (r == -EPERM)
        return fail(Errc::permission_denied, "{}: no keyslot opens with that key", path_);
    if (r < 0) return fail_errno(r, path_ + ": activate as /dev/mapper/" + name);
    return {};
}

Result<int> Luks::add_keyslot(const SecretBytes& volume_key, std::string_view passphrase) {
    if (int r = d_->api->crypt_set_pbkdf_type(d_->cd, &minimal_pbkdf); r < 0)
        return fail_errno(r, path_ + ": set PBKDF");
    int r = d_->api->crypt_keyslot_add_by_volume_key(
        d_->cd, CRYPT_ANY_SLOT, reinterpret_cast<const char*>(volume_key.data()), volume_key.size(),
        passphrase.data(), passphrase.size());
    if (r < 0) return fail_errno(r, path_ + ": add a keyslot");
    return r;
}

Status Luks::destroy_keyslot(int slot) {
    if (int r = d_->api->crypt_keyslot_destroy(d_->cd, slot); r < 0)
        return fail_errno(r, fmt::format("{}: remove keyslot {}", path_, slot));
    return {};
}

Result<int> Luks::add_token(const std::string& json) {
    int r = d_->api->crypt_token_json_set(d_->cd, CRYPT_ANY_TOKEN, json.c_str());
    if (r < 0) return fail_errno(r, path_ + ": add a token");
    return r;
}

Status Luks::remove_token(int id) {
    if (int r = d_->api->crypt_token_json_set(d_->cd, id, nullptr); r < 0)
        return fail_errno(r, fmt::format("{}: remove token {}", path_, id));
    return {};
}

std::vector<KeyslotInfo> Luks::keyslots() const {
    std::vector<KeyslotInfo> out;
    int max = d_->api->crypt_keyslot_max(CRYPT_LUKS2);
    for (int i = 0; i < max; ++i) {
        crypt_keyslot_info st = d_->api->crypt_keyslot_status(d_->cd, i);
        if (st != CRYPT_SLOT_ACTIVE && st != CRYPT_SLOT_ACTIVE_LAST) continue;
        KeyslotInfo k{i, ""};
        crypt_pbkdf_type p{};
        if (d_->api->crypt_keyslot_get_pbkdf(d_->cd, i, &p) == 0 && p.type) k.pbkdf = p.type;
        out.push_back(std::move(k));
    }
    return out;
}

std::vector<TokenInfo> Luks::tokens() const {
    std::vector<TokenInfo> out;
    int max = d_->api->crypt_token_max(CRYPT_LUKS2);
    for (int i = 0; i < max; ++i) {
        const char* type = nullptr;
        crypt_token_info st = d_->api->crypt_token_status(d_->cd, i, &type);
        if (st == CRYPT_TOKEN_INVALID || st == CRYPT_TOKEN_INACTIVE) continue;
        const char* json = nullptr;
        if (d_->api->crypt_token_json_get(d_->cd, i, &json) < 0 || !json) continue;
        out.push_back({i, type ? type : "", json});
    }
    return out;
}

}  // namespace ballast::crypt
