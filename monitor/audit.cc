#include "monitor/audit.h"

#include <signal.h>
#include <string.h>

#include <fmt/ranges.h>

#include "common/log.h"
#include "monitor/audit_chain.h"

namespace popguard::monitor {
namespace {

// How a field is written.  Tokens and numbers stand bare in the syslog
// line; text is quoted there.  In JSON, numbers are numbers, flags are
// true/false and everything else a string.
enum class Kind { kToken, kText, kNumber, kFlag };

struct Field {
  std::string_view key;
  Kind kind;
  std::string value;
};

// A bare word in a key=value line must not hold a space or a quote, or a
// hostile value could forge the fields after it.  Tokens are ours
// (mechanism, result, addresses from inet_ntop); this is the backstop.
std::string SafeToken(std::string_view v) {
  std::string out;
  for (char c : v.substr(0, 64)) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == ':' || c == '-' ||
              c == '_';
    out += ok ? c : '?';
  }
  return out.empty() ? "-" : out;
}

Field Token(std::string_view key, std::string_view v) {
  return {key, Kind::kToken, SafeToken(v)};
}

Field Text(std::string_view key, std::string_view v, std::size_t max = 200) {
  return {key, Kind::kText, Sanitize(v, max)};
}

Field Number(std::string_view key, std::uint64_t v) {
  return {key, Kind::kNumber, fmt::to_string(v)};
}

Field Flag(std::string_view key, bool v) {
  return {key, Kind::kFlag, v ? "yes" : "no"};
}

// User names are bounded tighter than other text: 64 escaped bytes hold
// any real account name.
Field User(std::string_view v) { return Text("user", v, 64); }

// Where the session's link runs: both ends, and its TLS state.
void AddWhere(std::vector<Field>* f, const SessionFacts& s) {
  f->push_back(Token("client", s.client_addr));
  f->push_back(Number("client_port", s.client_port));
  f->push_back(Token("server", s.server_addr));
  f->push_back(Number("server_port", s.server_port));
  if (!s.proxy_addr.empty()) f->push_back(Token("proxy", s.proxy_addr));
  if (s.tls_by_proxy)
    f->push_back(Token("tls", "proxy"));
  else
    f->push_back(Flag("tls", s.tls));
  if (s.tls) {
    f->push_back(Text("tls_protocol", s.tls_protocol, 32));
    f->push_back(Text("tls_cipher", s.tls_cipher, 64));
  }
}

AuditSinks& TheSinks() {
  static AuditSinks sinks;
  return sinks;
}

std::string SyslogLine(const SessionFacts* s, std::string_view event,
                       const std::vector<Field>& fields) {
  std::string line;
  if (s) line = fmt::format("session={} ", SafeToken(s->id));
  line += fmt::format("event={}", event);
  for (const Field& f : fields) {
    if (f.kind == Kind::kText)
      line += fmt::format(" {}=\"{}\"", f.key, f.value);
    else
      line += fmt::format(" {}={}", f.key, f.value);
  }
  return line;
}

std::string JsonMembers(const SessionFacts* s, std::string_view event,
                        const std::vector<Field>& fields) {
  std::string out;
  if (s) {
    out += "\"session\":";
    AppendJsonString(&out, SafeToken(s->id));
    out += ',';
  }
  out += "\"event\":";
  AppendJsonString(&out, event);
  for (const Field& f : fields) {
    out += ',';
    AppendJsonString(&out, f.key);
    out += ':';
    if (f.kind == Kind::kNumber)
      out += f.value;
    else if (f.kind == Kind::kFlag)
      out += f.value == "yes" ? "true" : "false";
    else
      AppendJsonString(&out, f.value);
  }
  return out;
}

void Record(LogLevel level, const SessionFacts* s, std::string_view event,
            const std::vector<Field>& fields) {
  LogLine(level, SyslogLine(s, event, fields));
  const AuditSinks& sinks = TheSinks();
  if (sinks.json_file.empty()) return;
  auto written = AppendChained(sinks.json_file, JsonMembers(s, event, fields));
  // The syslog copy above still holds the record.
  if (!written) Log(LogLevel::kError, "audit file: {}", written.error());
}

void SendLinuxAudit(LinuxAuditType type, std::string op, std::string_view user,
                    const SessionFacts& s, bool success) {
  const LinuxAudit& la = TheSinks().linux_audit;
  if (!la.is_open()) return;
  auto sent = la.Write({type, std::move(op), Sanitize(user, 64),
                        SafeToken(s.client_addr), success});
  // Once per process: a monitor lives for one session, and a kernel that
  // refuses one record refuses them all.
  static bool warned = false;
  if (!sent && !warned) {
    warned = true;
    Log(LogLevel::kWarning, "linux audit: {}", sent.error());
  }
}

// The session that logged in, in this process: a monitor serves one
// session, so the USER_END record can be paired with its USER_LOGIN
// without the caller saying so again.
std::string& LoggedIn() {
  static std::string id;
  return id;
}

bool EndedInError(std::string_view how) {
  return how.ends_with("-killed") || how.ends_with("-violation") ||
         how.ends_with("-error") || how == "commit-failed" || how == "in-use";
}

LogLevel LevelOf(std::string_view result) {
  return result == "ok" ? LogLevel::kNotice : LogLevel::kWarning;
}

}  // namespace

std::expected<AuditSinks, std::string> OpenAuditSinks(const Config& config) {
  AuditSinks sinks;
  if (!config.audit_json_file.empty()) {
    if (auto ok = CheckChainFile(config.audit_json_file); !ok)
      return std::unexpected(ok.error());
    sinks.json_file = config.audit_json_file;
  }
  if (config.audit_linux) {
    auto la = LinuxAudit::Open();
    if (!la)
      Log(LogLevel::kWarning, "linux audit: {}", la.error());
    else if (!la->KernelAuditOn())
      Log(LogLevel::kWarning,
          "linux audit: the kernel's audit is off (is auditd running?); "
          "records are dropped until it is on");
    if (la) sinks.linux_audit = std::move(*la);
  }
  return sinks;
}

void InstallAuditSinks(AuditSinks sinks) { TheSinks() = std::move(sinks); }

void AuditConnect(const SessionFacts& s) {
  std::vector<Field> f;
  AddWhere(&f, s);
  f.push_back(Flag("implicit_tls", s.implicit_tls));
  Record(LogLevel::kNotice, &s, "connect", f);
}

void AuditAuth(const SessionFacts& s, std::string_view user,
               std::string_view mech, std::string_view result,
               std::string_view reason) {
  std::vector<Field> f{Token("result", result)};
  AddWhere(&f, s);
  f.push_back(Token("mech", mech));
  f.push_back(User(user));
  if (!reason.empty()) f.push_back(Text("reason", reason));
  Record(LevelOf(result), &s, "auth", f);
  SendLinuxAudit(LinuxAuditType::kUserAuth,
                 fmt::format("pop3-{}", SafeToken(mech)), user, s,
                 result == "ok");
}

void AuditLogin(const SessionFacts& s, std::string_view user, unsigned uid,
                std::string_view mech) {
  std::vector<Field> f;
  AddWhere(&f, s);
  f.push_back(Token("mech", mech));
  f.push_back(User(user));
  f.push_back(Number("uid", uid));
  Record(LogLevel::kNotice, &s, "login", f);
  LoggedIn() = s.id;
  SendLinuxAudit(LinuxAuditType::kUserLogin, "login", user, s, true);
}

void AuditEnd(const SessionFacts& s, std::string_view user,
              std::string_view how, const ipc::SessionEnd& c) {
  auto elapsed = std::chrono::steady_clock::now() - s.start;
  double seconds = std::chrono::duration<double>(elapsed).count();
  std::vector<Field> f;
  AddWhere(&f, s);
  f.push_back(User(user));
  f.push_back(Token("reason", how));
  f.push_back(Number("messages", c.messages));
  f.push_back(Number("retrieved", c.retrieved));
  f.push_back(Number("octets", c.octets));
  f.push_back(Number("deleted", c.deleted));
  f.push_back({"duration", Kind::kNumber, fmt::format("{:.3f}", seconds)});
  Record(LogLevel::kNotice, &s, "end", f);
  // Only a session that logged in has a user session to end; the attempts
  // of one that did not are already on record as USER_AUTH.
  // res=success for any end the client or a timer chose; failed where
  // popguard could not serve the session as asked.
  if (LoggedIn() == s.id)
    SendLinuxAudit(LinuxAuditType::kUserEnd, "session-close", user, s,
                   !EndedInError(how));
}

void AuditChildKilled(const SessionFacts& s, std::string_view process,
                      std::string_view user, int signal,
                      std::string_view syscall) {
  const char* name = sigabbrev_np(signal);
  std::vector<Field> f;
  AddWhere(&f, s);
  f.push_back(Token("process", process));
  f.push_back(User(user));
  f.push_back(Token("signal", fmt::format("SIG{}", name ? name : "UNKNOWN")));
  if (!syscall.empty()) f.push_back(Token("syscall", syscall));
  Record(LogLevel::kWarning, &s, "child-killed", f);
}

void AuditTls(const SessionFacts& s, std::string_view error) {
  std::vector<Field> f{Token("result", error.empty() ? "ok" : "fail")};
  AddWhere(&f, s);
  if (!error.empty()) f.push_back(Text("error", error));
  Record(error.empty() ? LogLevel::kNotice : LogLevel::kWarning, &s, "tls", f);
}

void AuditViolation(const SessionFacts& s, std::string_view process,
                    std::string_view what) {
  std::vector<Field> f;
  AddWhere(&f, s);
  f.push_back(Token("process", process));
  f.push_back(Text("what", what));
  Record(LogLevel::kWarning, &s, "violation", f);
}

void AuditRefused(const SessionFacts& s, std::string_view reason,
                  std::string_view detail) {
  std::vector<Field> f{Token("reason", reason)};
  AddWhere(&f, s);
  if (!detail.empty()) f.push_back(Text("detail", detail));
  Record(LogLevel::kWarning, &s, "refused", f);
}

void AuditBan(const SessionFacts& s, unsigned failures,
              std::int64_t ban_seconds) {
  std::vector<Field> f;
  AddWhere(&f, s);
  f.push_back(Number("failures", failures));
  f.push_back(Number("ban_time", static_cast<std::uint64_t>(ban_seconds)));
  Record(LogLevel::kWarning, &s, "ban", f);
}

void AuditStart(const std::vector<std::string>& listen,
                const std::vector<std::string>& listen_tls,
                std::string_view version) {
  Record(LogLevel::kNotice, nullptr, "start",
         {Text("listen", fmt::format("{}", fmt::join(listen, ","))),
          Text("listen_tls", fmt::format("{}", fmt::join(listen_tls, ","))),
          Token("version", version)});
}

void AuditStop(unsigned sessions) {
  Record(LogLevel::kNotice, nullptr, "stop", {Number("sessions", sessions)});
}

void AuditReload(std::string_view config_path, std::string_view error) {
  std::vector<Field> f{Token("result", error.empty() ? "ok" : "fail"),
                       Text("config", config_path, 512)};
  if (!error.empty()) f.push_back(Text("error", error, 512));
  Record(error.empty() ? LogLevel::kNotice : LogLevel::kError, nullptr,
         "reload", f);
}

}  // namespace popguard::monitor
