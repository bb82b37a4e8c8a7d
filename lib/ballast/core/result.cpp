#include "ballast/core/result.hpp"

#include <cerrno>
#include <cstring>

namespace ballast {

std::string_view to_string(Errc code) noexcept {
    switch (code) {
        case Errc::failed:
            return "failed";
        case Errc::invalid_argument:
            return "invalid-argument";
        case Errc::not_found:
            return "not-found";
        case Errc::exists:
            return "exists";
        case Errc::permission_denied:
            return "permission-denied";
        case Errc::busy:
            return "busy";
        case Errc::io:
            return "io";
        case Errc::parse:
            return "parse";
        case Errc::unsupported:
            return "unsupported";
        case Errc::timeout:
            return "timeout";
        case Errc::verification:
            return "verification";
        case Errc::unavailable:
            return "unavailable";
        case Errc::cancelled:
            return "cancelled";
    }
    return "failed";
}

Errc errc_from_errno(int err) noexcept {
    switch (err < 0 ? -err : err) {
        case ENOENT:
        case ENXIO:
        case ENODEV:
            return Errc::not_found;
        case EEXIST:
        case ENOTEMPTY:
            return Errc::exists;
        case EACCES:
        case EPERM:
            return Errc::permission_denied;
        case EBUSY:
        case EAGAIN:
            return Errc::busy;
        case EINVAL:
        case ENAMETOOLONG:
        case ELOOP:
        case EXDEV:
            return Errc::invalid_argument;
        case ETIMEDOUT:
            return Errc::timeout;
        case EOPNOTSUPP:
        case ENOSYS:
            return Errc::unsupported;
        case ECONNREFUSED:
        case EHOSTUNREACH:
        case ENETUNREACH:
        case ECONNRESET:
            return Errc::unavailable;
        case ECANCELED:
            return Errc::cancelled;
        case EBADMSG:
            return Errc::parse;
        default:
            return Errc::io;
    }
}

std::vector<std::string> Error::context_chain() const {
    return {context_.rbegin(), context_.rend()};
}

std::string Error::what() const {
    std::string out;
    for (auto it = context_.rbegin(); it != context_.rend(); ++it) {
        out += *it;
        out += ": ";
    }
    out += message_;
    return out;
}

std::unexpected<Error> fail_errno(int err, std::string_view what) {
    if (err < 0) err = -err;
    std::string msg(what);
    if (!msg.empty()) msg += ": ";
    msg += std::strerror(err);
    return std::unexpected(Error(errc_from_errno(err), std::move(msg), err));
}

}  // namespace ballast
