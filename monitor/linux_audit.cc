#include "monitor/linux_audit.h"

#include <libaudit.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include <fmt/format.h>

namespace popguard::monitor {
namespace {

// The terminal field of every record, as sshd writes "ssh": it tells a
// POP3 login from a console or SSH one in aureport's login report.
constexpr const char* kTerminal = "pop3";

int TypeCode(LinuxAuditType t) {
  switch (t) {
    case LinuxAuditType::kUserAuth: return AUDIT_USER_AUTH;
    case LinuxAuditType::kUserLogin: return AUDIT_USER_LOGIN;
    case LinuxAuditType::kUserEnd: return AUDIT_USER_END;
  }
  return AUDIT_USER_AUTH;
}

}  // namespace

LinuxAudit::LinuxAudit(LinuxAudit&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)) {}

LinuxAudit& LinuxAudit::operator=(LinuxAudit&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) audit_close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

LinuxAudit::~LinuxAudit() {
  if (fd_ >= 0) audit_close(fd_);
}

std::expected<LinuxAudit, std::string> LinuxAudit::Open() {
  int fd = audit_open();
  if (fd >= 0) return LinuxAudit(fd);
  int err = errno;
  if (err == EPROTONOSUPPORT || err == EINVAL || err == EAFNOSUPPORT)
    return std::unexpected(std::string(
        "the kernel has no audit support; records go to syslog only"));
  return std::unexpected(
      fmt::format("cannot open the audit socket: {}", std::strerror(err)));
}

bool LinuxAudit::KernelAuditOn() const {
  return fd_ < 0 || audit_is_enabled(fd_) != 0;
}

std::expected<void, std::string> LinuxAudit::Write(
    const LinuxAuditRecord& r) const {
  if (fd_ < 0) return {};
  // The account is passed by name with id -1, as sshd does, so that the
  // record says acct="name" even for a name that has no uid; libaudit
  // hex-encodes a name that holds spaces or quotes.  A null program name
  // makes libaudit write the executable's path, again as sshd's records.
  int rc = audit_log_acct_message(fd_, TypeCode(r.type), nullptr, r.op.c_str(),
                                  r.account.c_str(), static_cast<unsigned>(-1),
                                  nullptr, r.addr.c_str(), kTerminal,
                                  r.success ? 1 : 0);
  if (rc > 0) return {};
  int err = errno;
  // ECONNREFUSED: audit is compiled in but switched off at boot (audit=0).
  if (err == ECONNREFUSED)
    return std::unexpected(std::string("the kernel's audit is disabled"));
  return std::unexpected(
      fmt::format("audit record not sent: {}", std::strerror(err)));
}

}  // namespace popguard::monitor
