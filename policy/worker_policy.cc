#include "policy/worker_policy.h"

namespace popguard::policy {

// Names are libseccomp's; a name the running architecture lacks (poll on
// arm64, which has only ppoll) resolves to a pseudo number and adds nothing.
//
// Left out on purpose:
// - mprotect: nothing in a single-threaded worker needs to change page
//   protections after start-up, and it is the usual step from a memory bug
//   to running injected code.
// - kill, tgkill, rt_sigaction, rt_sigprocmask: the worker signals no one.
//   abort() therefore ends in SIGSYS instead of SIGABRT; either way the
//   worker is dead and the monitor reports it, which an abort deserves.
// - socket, connect, execve, fork, clone, ptrace, setuid and friends:
//   the confinement this filter exists for.
// - rename, link: a Maildir UPDATE only removes messages, and the rename
//   that commits an mbox rewrite is the monitor's (the worker cannot
//   create files in the spool).  The filter cannot tell a message file
//   from the client socket for write(); a Maildir worker sets
//   RLIMIT_FSIZE=0 to stop file growth instead.  An mbox worker must
//   write the rewritten mailbox into the file the monitor gave it.
std::span<const SyscallGroup> WorkerSyscallGroups() {
  static const SyscallGroup kGroups[] = {
      {"exit",
       "end the process when the session is over",
       {"exit_group", "exit"}},
      {"signal-return",
       "return from a signal handler the kernel set up; resume a call "
       "that a stop (SIGSTOP, a frozen cgroup) interrupted",
       {"rt_sigreturn", "restart_syscall"}},
      {"memory",
       "malloc grows the heap with brk and maps large buffers",
       {"brk", "mmap", "munmap", "mremap", "madvise"}},
      {"mailbox-read",
       "open the mailbox directories and messages, list them, read them",
       {"openat", "read", "pread64", "lseek", "getdents64", "fstat",
        "newfstatat", "statx", "close"}},
      {"mailbox-lock",
       "take and hold the one-session lock (F_OFD_SETLK, or flock on an "
       "mbox, which delivery agents' fcntl locks do not conflict with), "
       "and the fcntl lock of an mbox while scanning and committing",
       {"fcntl", "flock"}},
      {"mailbox-update",
       "remove the Maildir messages marked deleted at QUIT; make the "
       "rewritten mbox durable before the monitor renames it into place",
       {"unlinkat", "fsync"}},
      {"client-io",
       "answer the client on fd 3, wait for it with the idle timeout",
       {"write", "writev", "poll", "ppoll"}},
      {"monitor-io",
       "ask the monitor for the mbox dotlock and temporary file, receive "
       "the replies (and that file's descriptor), send the session end",
       {"sendmsg", "recvmsg"}},
      {"time", "clock reads that miss the vDSO", {"clock_gettime"}},
  };
  return kGroups;
}

}  // namespace popguard::policy
