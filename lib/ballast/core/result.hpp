// Result<T>: the one error type of Ballast. An Error carries a code (what kind of failure, so
// callers and exit codes can branch on it), the errno when the failure came from the kernel,
// and a context chain that each level adds to on the way up, so the final text reads
//   upgrade: write slot B: /dev/vda4: No space left on device
#pragma once

#include <expected>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace ballast {

enum class Errc {
    failed,            // nothing more specific applies
    invalid_argument,  // bad input from a user, a file, a caller
    not_found,
    exists,
    permission_denied,
    busy,
    io,
    parse,
    unsupported,
    timeout,
    verification,  // signature, hash, policy mismatch
    unavailable,   // a peer (daemon, TPM, server) cannot be reached
    cancelled,
};

[[nodiscard]] std::string_view to_string(Errc code) noexcept;
[[nodiscard]] Errc errc_from_errno(int err) noexcept;

class Error {
  public:
    Error(Errc code, std::string message, int sys_errno = 0)
        : code_(code), errno_(sys_errno), message_(std::move(message)) {}

    [[nodiscard]] Errc code() const noexcept { return code_; }
    [[nodiscard]] int sys_errno() const noexcept { return errno_; }
    // The innermost message, without context.
    [[nodiscard]] const std::string& message() const noexcept { return message_; }
    // Context added so far, outermost first.
    [[nodiscard]] std::vector<std::string> context_chain() const;

    // Prepends one level of context ("write slot B").
    Error& context(std::string ctx) & {
        context_.push_back(std::move(ctx));
        return *this;
    }
    Error&& context(std::string ctx) && {
        context_.push_back(std::move(ctx));
        return std::move(*this);
    }

    // "outer: inner: message"
    [[nodiscard]] std::string what() const;

  private:
    Errc code_;
    int errno_;
    std::string message_;
    std::vector<std::string> context_;  // innermost first, as added on the way up
};

template <class T = void>
using Result = std::expected<T, Error>;
using Status = Result<void>;

[[nodiscard]] inline std::unexpected<Error> fail(Errc code, std::string message) {
    return std::unexpected(Error(code, std::move(message)));
}

template <class... Args>
[[nodiscard]] std::unexpected<Error> fail(Errc code, fmt::format_string<Args...> f,
                                          Args&&... args) {
    return std::unexpected(Error(code, fmt::format(f, std::forward<Args>(args)...)));
}

// "what: strerror(err)", code derived from err. `err` may be negative (sd-* convention).
[[nodiscard]] std::unexpected<Error> fail_errno(int err, std::string_view what);

// Adds context to a failed result; passes success through untouched.
template <class T>
[[nodiscard]] Result<T> with_context(Result<T>&& r, std::string ctx) {
    if (!r) r.error().context(std::move(ctx));
    return std::move(r);
}

}  // namespace ballast

// Propagate a failure, yield the value otherwise. GNU statement expression (GCC/clang), which is
// why the project builds without -Wpedantic.
#define BALLAST_TRY(...)                                                                \
    ({                                                                                  \
        auto&& ballast_try_r_ = (__VA_ARGS__);                                          \
        if (!ballast_try_r_) return std::unexpected(std::move(ballast_try_r_).error()); \
        std::move(ballast_try_r_).value();                                              \
    })

// Same, adding one level of context formatted like fmt::format.
#define BALLAST_TRY_CTX(expr, ...)                                                    \
    ({                                                                                \
        auto&& ballast_try_r_ = (expr);                                               \
        if (!ballast_try_r_)                                                          \
            return std::unexpected(                                                   \
                std::move(ballast_try_r_).error().context(fmt::format(__VA_ARGS__))); \
        std::move(ballast_try_r_).value();                                            \
    })
