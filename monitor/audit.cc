#include "monitor/audit.h"

#include <signal.h>
#include <string.h>

#include "common/log.h"

namespace popguard::monitor {
namespace {

// The fields every record of a session carries, after its id and event.
std::string Where(const SessionFacts& s) {
  if (!s.tls)
    return fmt::format("client={} port={} tls=no", s.client_addr,
                       s.client_port);
  return fmt::format("client={} port={} tls=yes tls_protocol={} tls_cipher={}",
                     s.client_addr, s.client_port, s.tls_protocol,
                     s.tls_cipher);
}

void Record(const SessionFacts& s, std::string_view event,
            std::string_view fields) {
  LogLine(LogLevel::kNotice,
          fmt::format("session={} event={} {}", s.id, event, fields));
}

std::string Quoted(std::string_view user) {
  return fmt::format("\"{}\"", Sanitize(user, 64));
}

}  // namespace

void AuditConnect(const SessionFacts& s) {
  Record(s, "connect",
         fmt::format("{} server={} server_port={}", Where(s), s.server_addr,
                     s.server_port));
}

void AuditAuth(const SessionFacts& s, std::string_view user,
               std::string_view mech, std::string_view result,
               std::string_view reason) {
  std::string fields = fmt::format("user={} mech={} {} result={}", Quoted(user),
                                   mech, Where(s), result);
  if (!reason.empty()) fields += fmt::format(" reason=\"{}\"", reason);
  Record(s, "auth", fields);
}

void AuditLogin(const SessionFacts& s, std::string_view user, unsigned uid,
                std::string_view mech) {
  Record(s, "login",
         fmt::format("user={} uid={} mech={} {}", Quoted(user), uid, mech,
                     Where(s)));
}

void AuditEnd(const SessionFacts& s, std::string_view user,
              std::string_view how, const ipc::SessionEnd& c) {
  auto elapsed = std::chrono::steady_clock::now() - s.start;
  double seconds = std::chrono::duration<double>(elapsed).count();
  Record(s, "end",
         fmt::format("user={} {} reason={} messages={} retrieved={} "
                     "octets={} deleted={} duration={:.3f}",
                     Quoted(user), Where(s), how, c.messages, c.retrieved,
                     c.octets, c.deleted, seconds));
}

void AuditChildKilled(const SessionFacts& s, std::string_view process,
                      std::string_view user, int signal) {
  const char* name = sigabbrev_np(signal);
  Record(s, "child-killed",
         fmt::format("process={} user={} signal=SIG{} {}", process,
                     Quoted(user), name ? name : "UNKNOWN", Where(s)));
}

void AuditTls(const SessionFacts& s, std::string_view error) {
  if (error.empty())
    Record(s, "tls", fmt::format("{} result=ok", Where(s)));
  else
    Record(s, "tls",
           fmt::format("{} result=fail error=\"{}\"", Where(s),
                       Sanitize(error, 200)));
}

void AuditViolation(const SessionFacts& s, std::string_view process,
                    std::string_view what) {
  Record(s, "violation",
         fmt::format("process={} what=\"{}\" {}", process, what, Where(s)));
}

}  // namespace popguard::monitor
