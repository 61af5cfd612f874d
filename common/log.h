// Logging.  Two kinds: audit records, written only by the monitor through
// monitor/audit.h, and debug/operational messages through Log().  Both go
// to syslog, or to stderr in the foreground mode.
#pragma once

#include <fmt/format.h>

#include <string>
#include <string_view>

namespace popguard {

enum class LogLevel { kDebug, kInfo, kNotice, kWarning, kError };

// Chooses the sink.  `ident` is the syslog tag ("popguard"); `to_stderr`
// selects stderr instead of syslog.
void InitLog(const char* ident, bool to_stderr, int facility, bool debug);

void LogLine(LogLevel level, std::string_view line);

template <typename... Args>
void Log(LogLevel level, fmt::format_string<Args...> f, Args&&... args) {
  LogLine(level, fmt::format(f, std::forward<Args>(args)...));
}

// Makes a client-supplied string safe to log, also inside key="value":
// printable ASCII except '"' and '\\' kept, every other byte as \xHH.  The
// escaped text is cut to at most `max` bytes, never inside an escape, and
// "..." is appended when anything was cut.
std::string Sanitize(std::string_view s, std::size_t max = 64);

// Maps a facility name ("mail", "daemon", "local0".."local7", "auth",
// "authpriv") to its LOG_ value, or -1.
int FacilityFromName(std::string_view name);

}  // namespace popguard
