#include "jobs.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

namespace ballast::agent {

Status JobRunner::attach(sd_event* event, std::function<void()> on_change) {
    on_change_ = std::move(on_change);
    efd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!efd_) return fail_errno(errno, "eventfd");
    sd_event_source* s = nullptr;
    int r = sd_event_add_io(event, &s, efd_.get(), EPOLLIN, on_event, this);
    if (r < 0) return fail_errno(r, "job event source");
    source_.reset(s);
    return {};
}

JobRunner::~JobRunner() {
    if (worker_.joinable()) worker_.join();
}

Status JobRunner::start(std::string operation, Work work, Done done) {
    if (busy())
        return fail(Errc::busy, "busy: '{}' is running; try again when it has finished",
                    operation_);
    if (worker_.joinable()) worker_.join();
    operation_ = std::move(operation);
    done_ = std::move(done);
    worker_ = std::thread([this, w = std::move(work)] {
        nlohmann::json res;
        try {
            res = w();
        } catch (const std::exception& e) {
            res = {{"ok", false}, {"error", std::string("internal error: ") + e.what()}};
        }
        {
            std::lock_guard lock(mu_);
            result_ = std::move(res);
        }
        uint64_t one = 1;
        (void)!::write(efd_.get(), &one, sizeof one);
    });
    if (on_change_) on_change_();
    return {};
}

int JobRunner::on_event(sd_event_source*, int fd, uint32_t, void* userdata) {
    uint64_t v;
    (void)!::read(fd, &v, sizeof v);
    static_cast<JobRunner*>(userdata)->finish();
    return 0;
}

void JobRunner::finish() {
    if (worker_.joinable()) worker_.join();
    nlohmann::json res;
    {
        std::lock_guard lock(mu_);
        res = std::move(result_);
    }
    auto done = std::move(done_);
    operation_.clear();
    if (done) done(res);
    if (on_change_) on_change_();
}

}  // namespace ballast::agent
