// Audit records: one line per security event, written only by the monitor.
// Each line starts with the session id and a fixed event name, then
// key=value fields that a person and fail2ban can both read.  Every string
// a client chose is escaped and bounded (common/log.h Sanitize); secrets
// never reach these functions.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "common/ipc.h"

namespace popguard::monitor {

// The facts about one connection that every record repeats.
struct SessionFacts {
  std::string id;
  std::string client_addr;
  unsigned client_port = 0;
  std::string server_addr;
  unsigned server_port = 0;
  bool implicit_tls = false;  // accepted on a POP3S listener
  bool tls = false;           // a TLS handshake has completed
  std::string tls_protocol;
  std::string tls_cipher;
  std::chrono::steady_clock::time_point start =
      std::chrono::steady_clock::now();
};

void AuditConnect(const SessionFacts& s);

// An authentication attempt.  result is "ok", "fail" or "refused";
// reason says why it was not "ok".
void AuditAuth(const SessionFacts& s, std::string_view user,
               std::string_view mech, std::string_view result,
               std::string_view reason);

void AuditLogin(const SessionFacts& s, std::string_view user, unsigned uid,
                std::string_view mech);

// The session is over.  `how` names the way it ended; the counters are
// zero for a session that never logged in.
void AuditEnd(const SessionFacts& s, std::string_view user,
              std::string_view how, const ipc::SessionEnd& counts);

// A child died by a signal (a seccomp violation shows as SIGSYS).
void AuditChildKilled(const SessionFacts& s, std::string_view process,
                      std::string_view user, int signal);

// A TLS handshake (STLS or implicit) ended; `error` is set on failure.
void AuditTls(const SessionFacts& s, std::string_view error);

// A child sent what the monitor's request table does not allow.
void AuditViolation(const SessionFacts& s, std::string_view process,
                    std::string_view what);

}  // namespace popguard::monitor
