// popguard-worker: one logged-in POP3 session on one mailbox.
//
// The monitor starts it with exec, already as the mail user (uid, gid and
// groups set, no capabilities, empty bounding set), with an empty
// environment and only argv[0].  Descriptors at start:
//   0, 1, 2  /dev/null
//   3        the client stream (TCP, or a socketpair to the TLS front)
//   4        the IPC socket to the monitor (SOCK_SEQPACKET)
// The client has sent its login command and waits for the answer; this
// process gives it, serves TRANSACTION and UPDATE, and reports how the
// session ended.
//
// Exit status: 0 after a session-end report, 1 if confinement failed,
// 2 if the monitor's first message was not a WorkerInit, 3 if the report
// could not be sent.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <ctime>
#include <optional>
#include <string_view>
#include <vector>

#include "common/ipc.h"
#include "policy/confine.h"
#include "policy/landlock.h"
#include "policy/worker_policy.h"
#include "worker/maildir.h"
#include "worker/mbox.h"
#include "worker/session.h"
#include "worker/spool_client.h"

namespace popguard::worker {
namespace {

constexpr int kClientFd = 3;
constexpr int kMonitorFd = 4;

constexpr int kExitConfineFailed = 1;
constexpr int kExitBadInit = 2;
constexpr int kExitReportFailed = 3;

// Descriptors the worker ever holds: the five it starts with, the Maildir,
// new/, cur/, the lock and one message, or the mbox file and the temporary
// file of its rewrite, with room to spare.
constexpr rlim_t kMaxFiles = 32;

std::optional<ipc::WorkerInit> ReceiveInit() {
  auto msg = ipc::Receive(kMonitorFd);
  if (!msg) return std::nullopt;
  if (msg->fd >= 0) {
    close(msg->fd);
    return std::nullopt;
  }
  ipc::WorkerInit init;
  if (!ipc::Decode(*msg, &init)) return std::nullopt;
  return init;
}

void PrepareClient() {
  // Responses are written whole, so Nagle has nothing to merge; without
  // NODELAY a response that fills the send buffer unevenly could still
  // leave its tail waiting for an ACK.  A socketpair to the front is not
  // TCP: that error is expected and ignored.
  int one = 1;
  setsockopt(kClientFd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  // Non-blocking, so that a client that stops reading cannot hold a write
  // longer than the idle timeout (FdSink polls).
  int flags = fcntl(kClientFd, F_GETFL);
  if (flags >= 0) fcntl(kClientFd, F_SETFL, flags | O_NONBLOCK);
}

// Landlock: of the whole filesystem, the worker reaches its own mailbox
// (the Maildir tree, or the one mbox file) and nothing else; the rewrite's
// temporary file comes as a descriptor from the monitor.  A mailbox that
// does not exist yet gets no rule, and so nothing is reachable at all.
std::expected<void, std::string> RestrictToMailbox(const std::string& path) {
  std::vector<policy::PathRule> rules;
  int fd = open(path.c_str(), O_PATH | O_CLOEXEC);
  struct stat st;
  if (fd >= 0 && fstat(fd, &st) == 0)
    rules.push_back({fd, S_ISDIR(st.st_mode), true});
  auto r = policy::RestrictToPaths(rules);
  if (fd >= 0) close(fd);
  if (!r) return std::unexpected(r.error());
  return {};
}

std::expected<void, std::string> Confine(const ipc::WorkerInit& init) {
  ipc::MailboxFormat format = init.format;
  // A client that closes during a response must end the session through
  // a failed write, not a signal.
  signal(SIGPIPE, SIG_IGN);
  if (auto r = policy::HardenProcess(); !r) return r;
  if (auto r = policy::LimitResource(RLIMIT_NOFILE, kMaxFiles); !r) return r;
  // A Maildir worker writes to no file; with FSIZE 0 a hijacked one cannot
  // fill the user's quota either.  An mbox worker writes the new mailbox
  // at QUIT, as large as the old one plus new mail, so it keeps the limit
  // it was started with.
  if (format == ipc::MailboxFormat::kMaildir) {
    if (auto r = policy::LimitResource(RLIMIT_FSIZE, 0); !r) return r;
  }
  if (auto r = RestrictToMailbox(init.mailbox); !r) return r;
  return policy::InstallSeccomp(policy::WorkerSyscallGroups(), kMonitorFd);
}

void Answer(std::string_view line) {
  FdSink sink(kClientFd, 10 * 1000);
  sink.Send(line);
}

int Report(ipc::SessionEnd end) {
  if (!ipc::SendMessage(kMonitorFd, end)) return kExitReportFailed;
  return 0;
}

constexpr std::string_view kInUse =
    "-ERR [IN-USE] mailbox is in use by another session\r\n";
constexpr std::string_view kBusy =
    "-ERR [IN-USE] mailbox is locked by another program, try again later\r\n";
constexpr std::string_view kUnavailable =
    "-ERR [SYS/TEMP] mailbox cannot be opened\r\n";

// Opens the mailbox, or answers the client and returns the end reason.
std::expected<std::unique_ptr<Mailbox>, ipc::EndReason> OpenMailbox(
    const ipc::WorkerInit& init, Spool& spool) {
  auto fail = [](std::string_view answer, ipc::EndReason reason) {
    Answer(answer);
    return std::unexpected(reason);
  };
  if (init.format == ipc::MailboxFormat::kMbox) {
    auto mb = Mbox::Open(init.mailbox, spool);
    if (mb) return std::move(*mb);
    switch (mb.error()) {
      case Mbox::Error::kInUse: return fail(kInUse, ipc::EndReason::kInUse);
      case Mbox::Error::kBusy: return fail(kBusy, ipc::EndReason::kInUse);
      case Mbox::Error::kIo: break;
    }
    return fail(kUnavailable, ipc::EndReason::kMailboxError);
  }
  auto md = Maildir::Open(init.mailbox);
  if (md) return std::move(*md);
  if (md.error() == Maildir::Error::kInUse)
    return fail(kInUse, ipc::EndReason::kInUse);
  return fail(kUnavailable, ipc::EndReason::kMailboxError);
}

int Run() {
  // 1. Learn whose session this is.
  auto init = ReceiveInit();
  if (!init) return kExitBadInit;

  // 2. Confine, before the mailbox or any client byte is touched.
  PrepareClient();
  if (auto r = Confine(*init); !r) {
    Answer("-ERR [SYS/TEMP] server error, try again later\r\n");
    return kExitConfineFailed;
  }

  // 3. Open the mailbox and answer the login.
  MonitorSpool spool(kMonitorFd);
  auto mailbox = OpenMailbox(*init, spool);
  if (!mailbox) {
    ipc::SessionEnd failure;
    failure.reason = mailbox.error();
    return Report(failure);
  }

  // 4. Serve until QUIT, a disconnect, a timeout or too many bad commands.
  // RFC 1939 section 3: the autologout timer is at least 10 minutes.
  std::uint32_t idle_s = init->idle_timeout_s ? init->idle_timeout_s : 600;
  int idle_ms = static_cast<int>(std::min<std::uint32_t>(idle_s, 86400)) * 1000;
  FdSink sink(kClientFd, idle_ms);
  Session session(**mailbox, sink, init->max_bad_commands);
  std::string capa;
  if (init->login_delay_s > 0)
    capa += "LOGIN-DELAY " + std::to_string(init->login_delay_s) + "\r\n";
  if (!init->expire.empty()) capa += "EXPIRE " + init->expire + "\r\n";
  session.SetPolicyCapabilities(std::move(capa));
  // The monitor sends "NEVER", a number of days, or nothing.
  const std::string& expire = init->expire;
  const char* end = expire.data() + expire.size();
  std::uint32_t days = 0;
  if (!expire.empty() && std::from_chars(expire.data(), end, days).ptr == end)
    session.SetExpiry(days, std::time(nullptr));
  session.Greet();
  Serve(session, kClientFd, init->pipelined, idle_ms);

  // 5. Tell the monitor how it ended.
  return Report(session.Summary());
}

}  // namespace
}  // namespace popguard::worker

// _exit, not a return: exit() would run library destructors (OpenSSL's
// clean-up) that make calls the sandbox does not allow, and the worker has
// nothing buffered to flush.
int main() { _exit(popguard::worker::Run()); }
