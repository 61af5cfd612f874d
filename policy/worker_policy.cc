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
// - rename, link, write to files: UPDATE only removes messages.  The
//   filter cannot tell a message file from the client socket for write(),
//   so RLIMIT_FSIZE=0 (set by the worker) stops file growth instead.
std::span<const SyscallGroup> WorkerSyscallGroups() {
  static const SyscallGroup kGroups[] = {
      {"exit",
       "end the process when the session is over",
       {"exit_group", "exit"}},
      {"signal-return",
       "return from a signal handler the kernel set up",
       {"rt_sigreturn"}},
      {"memory",
       "malloc grows the heap with brk and maps large buffers",
       {"brk", "mmap", "munmap", "mremap", "madvise"}},
      {"mailbox-read",
       "open the mailbox directories and messages, list them, read them",
       {"openat", "read", "pread64", "lseek", "getdents64", "fstat",
        "newfstatat", "statx", "close"}},
      {"mailbox-lock",
       "take and hold the one-session lock (F_OFD_SETLK)",
       {"fcntl"}},
      {"mailbox-update",
       "remove the messages marked deleted at QUIT",
       {"unlinkat"}},
      {"client-io",
       "answer the client on fd 3, wait for it with the idle timeout",
       {"write", "writev", "poll", "ppoll"}},
      {"monitor-io",
       "send the session-end record on the IPC socket",
       {"sendmsg"}},
      {"time", "clock reads that miss the vDSO", {"clock_gettime"}},
  };
  return kGroups;
}

}  // namespace popguard::policy
