#include "common/log.h"

#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <string>

namespace popguard {
namespace {

// The sink chosen by InitLog.  One per process, set once at start-up (and
// again in a child after fork, which may change the ident); before InitLog
// messages go to stderr so that early failures are seen.
struct Sink {
  std::string ident = "popguard";  // openlog keeps the pointer: keep it alive
  bool to_stderr = true;
  bool debug = false;
};

Sink& TheSink() {
  static Sink sink;
  return sink;
}

int Priority(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return LOG_DEBUG;
    case LogLevel::kInfo: return LOG_INFO;
    case LogLevel::kNotice: return LOG_NOTICE;
    case LogLevel::kWarning: return LOG_WARNING;
    case LogLevel::kError: return LOG_ERR;
  }
  return LOG_ERR;
}

std::string_view LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kNotice: return "notice";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kError: return "error";
  }
  return "error";
}

// One write(2) per line, so that lines from the several processes of a
// session sharing stderr never interleave mid-line.
void WriteStderr(const Sink& sink, LogLevel level, std::string_view line) {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  tm utc{};
  gmtime_r(&now.tv_sec, &utc);
  std::string out =
      fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z {}[{}]: {}: {}\n",
                  utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour,
                  utc.tm_min, utc.tm_sec, now.tv_nsec / 1000000, sink.ident,
                  getpid(), LevelName(level), line);
  std::string_view rest = out;
  while (!rest.empty()) {
    ssize_t n = write(STDERR_FILENO, rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // nowhere left to report it
    rest.remove_prefix(static_cast<std::size_t>(n));
  }
}

}  // namespace

void InitLog(const char* ident, bool to_stderr, int facility, bool debug) {
  // closelog first: syslog still holds a pointer into the old ident.
  closelog();
  Sink& sink = TheSink();
  sink.ident = ident ? ident : "popguard";
  sink.to_stderr = to_stderr;
  sink.debug = debug;
  // LOG_NDELAY connects to /dev/log now: a confined process has no
  // filesystem to find it in later.
  if (!to_stderr) openlog(sink.ident.c_str(), LOG_PID | LOG_NDELAY, facility);
}

void LogLine(LogLevel level, std::string_view line) {
  const Sink& sink = TheSink();
  if (level == LogLevel::kDebug && !sink.debug) return;
  if (sink.to_stderr) {
    WriteStderr(sink, level, line);
    return;
  }
  int len = line.size() > 8192 ? 8192 : static_cast<int>(line.size());
  syslog(Priority(level), "%.*s", len, line.data());
}

std::string Sanitize(std::string_view s, std::size_t max) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() < max ? s.size() : max);
  for (std::size_t i = 0; i < s.size(); i++) {
    auto ch = static_cast<unsigned char>(s[i]);
    bool plain = ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\';
    std::size_t width = plain ? 1 : 4;
    if (out.size() + width > max) {
      out += "...";
      break;
    }
    if (plain) {
      out += static_cast<char>(ch);
    } else {
      out += "\\x";
      out += kHex[ch >> 4];
      out += kHex[ch & 0xf];
    }
  }
  return out;
}

int FacilityFromName(std::string_view name) {
  static constexpr struct {
    std::string_view name;
    int value;
  } kFacilities[] = {
      {"mail", LOG_MAIL},     {"daemon", LOG_DAEMON},
      {"auth", LOG_AUTH},     {"authpriv", LOG_AUTHPRIV},
      {"local0", LOG_LOCAL0}, {"local1", LOG_LOCAL1},
      {"local2", LOG_LOCAL2}, {"local3", LOG_LOCAL3},
      {"local4", LOG_LOCAL4}, {"local5", LOG_LOCAL5},
      {"local6", LOG_LOCAL6}, {"local7", LOG_LOCAL7},
  };
  for (const auto& f : kFacilities)
    if (f.name == name) return f.value;
  return -1;
}

}  // namespace popguard
