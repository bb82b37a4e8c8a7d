#include "ballast/ops/escrow.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ballast/core/atomic_file.hpp"
#include "ballast/core/fd.hpp"
#include "ballast/core/process.hpp"

namespace ballast::ops {

Status escrow_recovery_key(const config::AgentSettings& s, const std::string& key) {
    if (s.tpm.recovery_key_command.empty()) return {};
    ProcessOptions p = shell_command(s.tpm.recovery_key_command);
    p.input = key + "\n";
    auto r = run_process(p);
    if (!r || !r->success())
        return fail(Errc::failed, "tpm.recovery_key_command failed{}",
                    r ? fmt::format(" (exit {})", r->exit_code) : ": " + r.error().what());
    return {};
}

Status keep_for_escrow(const std::filesystem::path& run_dir, const std::string& key) {
    const auto dir = run_dir / kEscrowDir;
    if (::mkdir(dir.c_str(), 0700) < 0 && errno != EEXIST) return fail_errno(errno, dir.string());
    if (::chmod(dir.c_str(), 0700) < 0) return fail_errno(errno, dir.string());
    return write_file_atomic(dir / kEscrowFile, key + "\n", {.mode = 0600});
}

Result<bool> escrow_pending(const RootPrefix& root, const config::AgentSettings& s) {
    const auto path =
        BALLAST_TRY(root.resolve(fmt::format("/run/ballast/{}/{}", kEscrowDir, kEscrowFile)));
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) return false;
    auto text = BALLAST_TRY(read_file(path, 4096));
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
        text.pop_back();
    if (s.tpm.recovery_key_command.empty())
        return fail(Errc::invalid_argument,
                    "a recovery key made at boot waits in {}, but agent.yaml sets no "
                    "tpm.recovery_key_command",
                    path.string());
    BALLAST_TRY(escrow_recovery_key(s, text));
    // Overwritten before it goes: tmpfs pages are freed, not kept, but a copy left behind by
    // a crash between the steps would still be overwritten.
    {
        UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
        if (fd) {
            const std::string zeros(text.size() + 1, '\0');
            if (::pwrite(fd.get(), zeros.data(), zeros.size(), 0) < 0)
                return fail_errno(errno, "wipe " + path.string());
        }
    }
    std::fill(text.begin(), text.end(), '\0');
    if (::unlink(path.c_str()) < 0) return fail_errno(errno, "remove " + path.string());
    return true;
}

}  // namespace ballast::ops
