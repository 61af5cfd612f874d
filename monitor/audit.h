// Audit records: one record per security event, written only by the
// monitor (and, for start, stop and reload, the listener).
//
// Every record goes to syslog (stderr in the foreground mode) as one line,
// the session id first, then a fixed event name, then key=value fields
// that a person and fail2ban can both read:
//
//   session=3f9a0c12d4e5 event=auth result=fail client=192.0.2.7
//   client_port=51234 server=192.0.2.1 server_port=110 tls=no mech=pass
//   user="alice" reason="Authentication failure"
//
// (one line).  The key names and their order are stable; README.md lists
// them per event.  Records of a success are written at LOG_NOTICE, of a
// failure or refusal at LOG_WARNING, so that an admin can filter.  The
// same records go, when configured, to the Linux audit subsystem
// (monitor/linux_audit.h: auth, login and end only) and to a JSON-lines
// file whose lines are chained by digest (monitor/audit_chain.h), with
// the same keys and numbers as numbers.
//
// Every string a client chose is escaped and bounded (common/log.h
// Sanitize) before it reaches any sink.  Secrets never reach these
// functions: there is no parameter for a password, a digest or an AUTH
// payload.  A user who types a password into USER has it recorded as the
// user name, as sshd and login(1) do.
#pragma once

#include <chrono>
#include <expected>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"
#include "common/ipc.h"
#include "monitor/linux_audit.h"

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
  // Behind a balancer (PROXY protocol): its address, while client_addr is
  // the client it named.  tls_by_proxy: the balancer terminated TLS and
  // server.proxy_trust_tls counts that as TLS (records say tls=proxy).
  std::string proxy_addr;
  bool tls_by_proxy = false;
  std::chrono::steady_clock::time_point start =
      std::chrono::steady_clock::now();
};

// Where records go besides syslog.
struct AuditSinks {
  std::string json_file;   // empty: no JSON-lines file
  LinuxAudit linux_audit;  // closed: no Linux audit records
};

// Prepares the sinks that `config` asks for: checks that the JSON file can
// be opened (creating it, root-only), which is an error if not, and opens
// the Linux audit socket, which is only a warning if the kernel refuses.
// Run as root, before any child is forked.
std::expected<AuditSinks, std::string> OpenAuditSinks(const Config& config);

// Makes `sinks` the ones this process, and every process it forks from
// now on, writes to.  Set at start-up and on a reload, as InitLog is.
void InstallAuditSinks(AuditSinks sinks);

void AuditConnect(const SessionFacts& s);

// An authentication attempt.  result is "ok", "fail" (wrong credentials,
// unknown or system account) or "refused" (the policy forbids the
// mechanism on this link; no secret was checked); reason says why it was
// not "ok".
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
// `syscall` names the forbidden call when the child reported it before it
// died (the filter traps, the child tells the monitor, then dies); waitpid
// alone cannot tell.  Empty when unknown: the kernel's own SECCOMP audit
// record still has it (ausearch -m SECCOMP).
void AuditChildKilled(const SessionFacts& s, std::string_view process,
                      std::string_view user, int signal,
                      std::string_view syscall = {});

// A TLS handshake (STLS or implicit) ended; `error` is set on failure.
void AuditTls(const SessionFacts& s, std::string_view error);

// A child sent what the monitor's request table does not allow.
void AuditViolation(const SessionFacts& s, std::string_view process,
                    std::string_view what);

// A connection refused before any command was read: `reason` is a fixed
// token ("address-banned", "sessions-per-address", "proxy-header",
// "penalty-file"), `detail` free text for the admin.
void AuditRefused(const SessionFacts& s, std::string_view reason,
                  std::string_view detail);

// A failure made the client's address one that is refused for
// `ban_seconds` (auth.ban_after_failures failures in a row).
void AuditBan(const SessionFacts& s, unsigned failures,
              std::int64_t ban_seconds);

// The listener's own events, which belong to no session.
void AuditStart(const std::vector<std::string>& listen,
                const std::vector<std::string>& listen_tls,
                std::string_view version);
void AuditStop(unsigned sessions);
// A configuration reload (SIGHUP): `error` is empty when it took effect.
void AuditReload(std::string_view config_path, std::string_view error);

}  // namespace popguard::monitor
