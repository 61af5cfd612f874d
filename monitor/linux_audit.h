// The Linux audit subsystem as a sink for popguard's audit records.
//
// The monitor writes the records an admin already reads for sshd and
// login(1): USER_AUTH for each authentication attempt, USER_LOGIN when a
// session starts, USER_END when it ends, each with the account, the
// client's address, terminal "pop3" and the result.  ausearch and aureport
// find them like any other login:
//
//   ausearch -m USER_AUTH,USER_LOGIN,USER_END -ts today -i
//
// The netlink socket is opened once, as root, before any child is forked;
// a kernel without audit (or one booted with audit=0) costs one warning and
// nothing else.
#pragma once

#include <expected>
#include <string>
#include <string_view>

namespace popguard::monitor {

enum class LinuxAuditType {
  kUserAuth,   // AUDIT_USER_AUTH
  kUserLogin,  // AUDIT_USER_LOGIN
  kUserEnd,    // AUDIT_USER_END
};

// One record as popguard fills it in.  libaudit adds the rest (pid, uid,
// auid, ses, exe) from the calling process.
struct LinuxAuditRecord {
  LinuxAuditType type = LinuxAuditType::kUserAuth;
  std::string op;       // "pop3-pass", "pop3-plain", "pop3-apop", "login",
                        // "session-close"
  std::string account;  // the user name as given, already bounded
  std::string addr;     // the client's address
  bool success = false;
};

// An open audit netlink socket, closed when destroyed.
class LinuxAudit {
 public:
  LinuxAudit() = default;
  LinuxAudit(LinuxAudit&& other) noexcept;
  LinuxAudit& operator=(LinuxAudit&& other) noexcept;
  LinuxAudit(const LinuxAudit&) = delete;
  LinuxAudit& operator=(const LinuxAudit&) = delete;
  ~LinuxAudit();

  // Opens the socket (close-on-exec).  On failure the message says why,
  // for one warning at start-up.
  static std::expected<LinuxAudit, std::string> Open();

  bool is_open() const { return fd_ >= 0; }

  // False when the kernel's audit is switched off (no auditd has turned it
  // on): records are accepted and dropped.  True when on, or unknown.
  bool KernelAuditOn() const;

  // Sends one record.  On failure returns why; the caller decides how
  // often to say so.  A closed sink accepts and drops every record.
  std::expected<void, std::string> Write(const LinuxAuditRecord& r) const;

 private:
  explicit LinuxAudit(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace popguard::monitor
