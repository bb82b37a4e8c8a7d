#include "ballast/ops/progress.hpp"

#include "ballast/core/json.hpp"

namespace ballast::ops {

nlohmann::json ProgressLine::to_json() const {
    return {{"progress", {{"phase", phase}, {"done", done}, {"total", total}}}};
}

ProgressLine ProgressLine::from_json(const nlohmann::json& j) {
    return {json_field<std::string>(j, "phase", ""), json_field<uint64_t>(j, "done", 0),
            json_field<uint64_t>(j, "total", 0)};
}

bool ProgressThrottle::take(const ProgressLine& p, Clock::time_point now) {
    const int pct = p.total ? int(p.done * 100 / p.total) : 0;
    new_phase_ = p.phase != last_phase_;
    if (!new_phase_ && (pct == last_pct_ || now - last_t_ < std::chrono::milliseconds(200)) &&
        p.done != p.total)
        return false;
    last_phase_ = p.phase;
    last_pct_ = pct;
    last_t_ = now;
    return true;
}

nlohmann::json ProgressSample::to_json() const {
    return {{"Phase", phase}, {"Percent", percent}, {"Bytes", bytes},
            {"Total", total}, {"Rate", rate},       {"EtaSeconds", eta}};
}

ProgressSample ProgressSample::starting() {
    return {"starting", 0.0, 0, 0, 0.0, -1.0};
}

ProgressSample ProgressMeter::update(const ProgressLine& p, Clock::time_point now) {
    if (p.phase != phase_) {
        phase_ = p.phase;
        t0_ = now;
        bytes0_ = p.done;
    }
    const double secs = std::chrono::duration<double>(now - t0_).count();
    ProgressSample s;
    s.phase = p.phase;
    s.bytes = p.done;
    s.total = p.total;
    s.rate = secs > 0.2 && p.done > bytes0_ ? double(p.done - bytes0_) / secs : 0;
    s.percent = p.total ? 100.0 * double(p.done) / double(p.total) : 0;
    s.eta = s.rate > 0 && p.total >= p.done ? double(p.total - p.done) / s.rate : -1;
    return s;
}

}  // namespace ballast::ops
