#include "ballast/core/log.hpp"

#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>

#include <cstdlib>
#include <mutex>

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

namespace ballast::log {
namespace {

thread_local std::vector<std::pair<std::string, std::string>> t_fields;

class JournalSink final : public spdlog::sinks::base_sink<std::mutex> {
  public:
    explicit JournalSink(std::string ident) : ident_(std::move(ident)) {}

  protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        RecordInfo rec{ident_,
                       msg.level,
                       std::string_view(msg.payload.data(), msg.payload.size()),
                       msg.source.filename ? msg.source.filename : "",
                       msg.source.line,
                       msg.source.funcname ? msg.source.funcname : ""};
        auto fields = journal_fields(rec);
        std::vector<iovec> iov;
        iov.reserve(fields.size());
        for (auto& f : fields)
            iov.push_back({f.data(), f.size()});
        // Nothing useful can be done when journald is gone; the record is lost either way.
        (void)sd_journal_sendv(iov.data(), static_cast<int>(iov.size()));
    }
    void flush_() override {}

  private:
    std::string ident_;
};

}  // namespace

Result<spdlog::level::level_enum> parse_level(std::string_view name) {
    using L = spdlog::level::level_enum;
    if (name == "trace") return L::trace;
    if (name == "debug") return L::debug;
    if (name == "info") return L::info;
    if (name == "warning" || name == "warn") return L::warn;
    if (name == "error" || name == "err") return L::err;
    if (name == "critical" || name == "crit") return L::critical;
    if (name == "off") return L::off;
    return fail(
        Errc::invalid_argument,
        "unknown log level '{}' (expected trace, debug, info, warning, error, critical, off)",
        name);
}

std::string_view level_name(spdlog::level::level_enum lvl) {
    using L = spdlog::level::level_enum;
    switch (lvl) {
        case L::trace:
            return "trace";
        case L::debug:
            return "debug";
        case L::info:
            return "info";
        case L::warn:
            return "warning";
        case L::err:
            return "error";
        case L::critical:
            return "critical";
        default:
            return "off";
    }
}

int syslog_priority(spdlog::level::level_enum lvl) {
    using L = spdlog::level::level_enum;
    switch (lvl) {
        case L::trace:
        case L::debug:
            return 7;
        case L::info:
            return 6;
        case L::warn:
            return 4;
        case L::err:
            return 3;
        case L::critical:
            return 2;
        default:
            return 6;
    }
}

bool stderr_is_journal() {
    const char* js = std::getenv("JOURNAL_STREAM");
    if (!js) return false;
    unsigned long long dev = 0, ino = 0;
    if (std::sscanf(js, "%llu:%llu", &dev, &ino) != 2) return false;
    struct stat st {};
    if (::fstat(2, &st) < 0) return false;
    return st.st_dev == dev && st.st_ino == ino;
}

std::vector<std::string> journal_fields(const RecordInfo& rec) {
    std::vector<std::string> f;
    f.reserve(6 + t_fields.size());
    f.push_back(fmt::format("MESSAGE={}", rec.message));
    f.push_back(fmt::format("PRIORITY={}", syslog_priority(rec.level)));
    f.push_back(fmt::format("SYSLOG_IDENTIFIER={}", rec.ident));
    if (!rec.file.empty()) {
        f.push_back(fmt::format("CODE_FILE={}", rec.file));
        f.push_back(fmt::format("CODE_LINE={}", rec.line));
    }
    if (!rec.func.empty()) f.push_back(fmt::format("CODE_FUNC={}", rec.func));
    for (const auto& [k, v] : t_fields)
        f.push_back(fmt::format("{}={}", k, v));
    return f;
}

ScopedField::ScopedField(std::string name, std::string value) {
    t_fields.emplace_back(std::move(name), std::move(value));
}
ScopedField::~ScopedField() {
    t_fields.pop_back();
}

void init(std::string_view ident, spdlog::level::level_enum lvl, Target target) {
    if (target == Target::automatic)
        target = stderr_is_journal() ? Target::journal : Target::stderr_text;
    std::shared_ptr<spdlog::logger> logger;
    if (target == Target::journal) {
        logger = std::make_shared<spdlog::logger>(
            std::string(ident), std::make_shared<JournalSink>(std::string(ident)));
    } else {
        auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
        // Terse: a human reads this on a console; the journal adds its own timestamps.
        sink->set_pattern("%^%l%$: %v");
        logger = std::make_shared<spdlog::logger>(std::string(ident), std::move(sink));
    }
    logger->set_level(lvl);
    logger->flush_on(spdlog::level::trace);
    spdlog::set_default_logger(std::move(logger));
}

}  // namespace ballast::log
