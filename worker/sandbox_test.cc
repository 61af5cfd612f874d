// The worker's seccomp allowlist under the real filter: a whole session
// runs inside it, and each forbidden call kills the process with SIGSYS.
// Every case runs in a forked child, since a filter cannot be removed.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>

#include "policy/confine.h"
#include "policy/worker_policy.h"
#include "worker/maildir.h"
#include "worker/maildir_testing.h"
#include "worker/mbox.h"
#include "worker/mbox_testing.h"
#include "worker/session.h"
#include "worker/spool_client.h"

namespace popguard::worker {
namespace {

using testing::TempMaildir;

// Starts fn in a child under the worker's filter; fn's return value is the
// child's exit code.
pid_t StartConfined(const std::function<int()>& fn) {
  pid_t pid = fork();
  if (pid == 0) {
    if (!policy::HardenProcess()) _exit(100);
    if (!policy::InstallSeccomp(policy::WorkerSyscallGroups())) _exit(101);
    _exit(fn());
  }
  return pid;
}

int Wait(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

// Runs fn in a child under the worker's filter; returns the wait status.
int RunConfined(const std::function<int()>& fn) {
  return Wait(StartConfined(fn));
}

std::string ReadToEnd(int fd) {
  std::string got;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) got.append(buf, n);
  return got;
}

bool KilledBySigsys(int status) {
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS;
}

TEST(WorkerSandboxTest, WholeSessionRunsUnderTheFilter) {
  TempMaildir md;
  md.Add("new", "1.a.host", "Subject: a\n\n.body\n");
  md.Add("cur", "2.b host:2,S", "Subject: b\r\n\r\nx");  // hashed UIDL
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  std::string script =
      "STAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nTOP 2 0\r\nDELE 1\r\nCAPA\r\n"
      "QUIT\r\n";
  ASSERT_EQ(write(fds[1], script.data(), script.size()),
            static_cast<ssize_t>(script.size()));

  int status = RunConfined([&] {
    close(fds[1]);
    auto mb = Maildir::Open(md.path());
    if (!mb) return 1;
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    FdSink sink(fds[0], 1000);
    Session session(**mb, sink, 5);
    session.Greet();
    Serve(session, fds[0], "NOOP\r\n", 1000);
    return session.end_reason() == ipc::EndReason::kQuit ? 0 : 2;
  });
  close(fds[0]);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  std::string got;
  char buf[4096];
  for (ssize_t n; (n = read(fds[1], buf, sizeof buf)) > 0;) got.append(buf, n);
  close(fds[1]);
  EXPECT_TRUE(got.ends_with("+OK popguard signing off (1 message left)\r\n"))
      << got;
  EXPECT_FALSE(md.Exists("new", "1.a.host"));
}

// The mbox path: the scan and the commit ask for the spool locks and the
// temporary file over a SEQPACKET socket, as from the monitor, and the
// rewrite is written into the descriptor that comes back.
TEST(WorkerSandboxTest, WholeMboxSessionRunsUnderTheFilter) {
  testing::TempMbox box;
  box.Write(
      "From a Mon Jan  1 00:00:00 2024\nS: 1\n\n>From x\n\n"
      "From b Mon Jan  1 00:00:00 2024\nS: 2\n\nkept\n\n");
  int client[2], ipc_fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, client), 0);
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, ipc_fds), 0);
  std::string script =
      "STAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nTOP 2 0\r\nDELE 1\r\nQUIT\r\n";
  ASSERT_EQ(write(client[1], script.data(), script.size()),
            static_cast<ssize_t>(script.size()));

  pid_t pid = StartConfined([&] {
    close(client[1]);
    close(ipc_fds[1]);
    MonitorSpool spool(ipc_fds[0]);
    auto mb = Mbox::Open(box.path(), spool);
    if (!mb) return 1;
    fcntl(client[0], F_SETFL, O_NONBLOCK);
    FdSink sink(client[0], 1000);
    Session session(**mb, sink, 5);
    session.Greet();
    Serve(session, client[0], "", 1000);
    return session.end_reason() == ipc::EndReason::kQuit ? 0 : 2;
  });
  close(client[0]);
  close(ipc_fds[0]);
  testing::LocalSpool spool(box.path());
  testing::ServeSpool(ipc_fds[1], spool);
  int status = Wait(pid);
  close(ipc_fds[1]);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  std::string got = ReadToEnd(client[1]);
  close(client[1]);
  EXPECT_NE(got.find("+OK 16 octets\r\nS: 1\r\n\r\nFrom x\r\n.\r\n"),
            std::string::npos)
      << got;
  EXPECT_TRUE(got.ends_with("+OK popguard signing off (1 message left)\r\n"))
      << got;
  EXPECT_EQ(box.Read(), "From b Mon Jan  1 00:00:00 2024\nS: 2\n\nkept\n\n");
  EXPECT_EQ(spool.temps, 1);
}

TEST(WorkerSandboxTest, KilledBySigsysOnExecve) {
  EXPECT_TRUE(KilledBySigsys(RunConfined([] {
    char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
    syscall(SYS_execve, "/bin/true", argv, nullptr);
    return 0;
  })));
}

TEST(WorkerSandboxTest, KilledBySigsysOnSocket) {
  EXPECT_TRUE(KilledBySigsys(RunConfined([] {
    syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
    return 0;
  })));
}

TEST(WorkerSandboxTest, KilledBySigsysOnConnect) {
  EXPECT_TRUE(KilledBySigsys(RunConfined([] {
    syscall(SYS_connect, 0, nullptr, 0);
    return 0;
  })));
}

TEST(WorkerSandboxTest, KilledBySigsysOnFork) {
  EXPECT_TRUE(KilledBySigsys(RunConfined([] {
    syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    return 0;
  })));
}

TEST(WorkerSandboxTest, KilledBySigsysOnPtrace) {
  EXPECT_TRUE(KilledBySigsys(RunConfined([] {
    syscall(SYS_ptrace, PTRACE_TRACEME, 0, 0, 0);
    return 0;
  })));
}

TEST(WorkerSandboxTest, KilledBySigsysOnKill) {
  EXPECT_TRUE(KilledBySigsys(RunConfined([] {
    syscall(SYS_kill, 1, 0);
    return 0;
  })));
}

TEST(WorkerSandboxTest, KilledBySigsysOnMprotect) {
  EXPECT_TRUE(KilledBySigsys(RunConfined([] {
    static char page[4096] __attribute__((aligned(4096)));
    syscall(SYS_mprotect, page, sizeof page, PROT_READ);
    return 0;
  })));
}

TEST(WorkerSandboxTest, KilledBySigsysOnRename) {
  TempMaildir md;
  md.Add("new", "1.a", "x\n");
  std::string from = md.Path("new", "1.a"), to = md.Path("cur", "1.a:2,S");
  EXPECT_TRUE(KilledBySigsys(RunConfined([&] {
    syscall(SYS_renameat, AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str());
    return 0;
  })));
  EXPECT_TRUE(md.Exists("new", "1.a"));
}

}  // namespace
}  // namespace popguard::worker
