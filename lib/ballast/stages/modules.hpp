// The step modules, one function each, run in yip's order by the executor.
#pragma once

#include "ballast/config/model.hpp"
#include "ballast/stages/context.hpp"

namespace ballast::stages::modules {

void dns(const config::Step& s, StageContext& ctx, ModuleResult& r);
void downloads(const config::Step& s, StageContext& ctx, ModuleResult& r);
void ensure_entities(const config::Step& s, StageContext& ctx, ModuleResult& r);
void directories(const config::Step& s, StageContext& ctx, ModuleResult& r);
void files(const config::Step& s, StageContext& ctx, ModuleResult& r);
void commands(const config::Step& s, StageContext& ctx, ModuleResult& r);
void delete_entities(const config::Step& s, StageContext& ctx, ModuleResult& r);
void hostname(const config::Step& s, StageContext& ctx, ModuleResult& r);
void sysctl(const config::Step& s, StageContext& ctx, ModuleResult& r);
void users(const config::Step& s, StageContext& ctx, ModuleResult& r);
void authorized_keys(const config::Step& s, StageContext& ctx, ModuleResult& r);
void kernel_modules(const config::Step& s, StageContext& ctx, ModuleResult& r);
void timesyncd(const config::Step& s, StageContext& ctx, ModuleResult& r);
void systemctl(const config::Step& s, StageContext& ctx, ModuleResult& r);
void environment(const config::Step& s, StageContext& ctx, ModuleResult& r);
void systemd_firstboot(const config::Step& s, StageContext& ctx, ModuleResult& r);
void datasource(const config::Step& s, StageContext& ctx, ModuleResult& r);
// Not step modules: the built-in steps (whole config). k3s: boot and reconcile stages; network:
// initramfs, boot and reconcile stages, where the config has a `network:` block.
void k3s(const config::Config& cfg, StageContext& ctx, ModuleResult& r);
// `remove_stale` false (the initramfs stage): documents beyond the config's are kept, since the
// config fetched by datasources at the last boot is not there yet.
void network(const config::Config& cfg, StageContext& ctx, ModuleResult& r, bool remove_stale);
// Whether the network step has anything to do: config, or Ballast's documents to remove.
[[nodiscard]] bool network_pending(const config::Config& cfg, const StageContext& ctx);
// The file a datasource step stores a platform's own network config in; the network step uses
// such a file only where no other file of the config has network config.
[[nodiscard]] std::string platform_network_file(std::string_view provider);
[[nodiscard]] bool is_platform_network_file(std::string_view path);

// Shared by files, dns, environment, timesyncd, hostname, sysctl: make `path` hold exactly
// `content` with `mode` and ownership, writing only when something differs. Returns whether it
// changed; missing parents are created 0755.
[[nodiscard]] Result<bool> ensure_file(const RootPrefix& root, const std::string& path,
                                       const std::string& content, mode_t mode,
                                       std::optional<uid_t> uid = {},
                                       std::optional<gid_t> gid = {});

}  // namespace ballast::stages::modules
