#include "policy/front_policy.h"

namespace popguard::policy {

// Anything absent here kills the front with SIGSYS: notably execve, socket,
// connect, open/openat (it has no file to open: its root is empty),
// ptrace, fork/clone and every id-changing call.
std::span<const SyscallGroup> FrontSyscallGroups() {
  static const SyscallGroup kGroups[] = {
      {"stream-io",
       "talk to the client and the monitor",
       {"read", "write", "readv", "writev", "sendmsg", "recvmsg", "sendto",
        "recvfrom", "poll", "ppoll", "shutdown"}},
      {"memory",
       "malloc, and OpenSSL's arenas",
       {"brk", "mmap", "munmap", "mremap", "madvise", "mprotect"}},
      {"time",
       "timeouts and the delay between reads",
       {"clock_gettime", "gettimeofday", "clock_nanosleep", "nanosleep"}},
      {"random", "OpenSSL seeds its generator from the kernel", {"getrandom"}},
      {"descriptors",
       "close what is done with; query the sockets",
       {"close", "fstat", "newfstatat", "fcntl", "getsockopt", "setsockopt",
        "getpeername", "getsockname"}},
      {"process",
       "leave; return from a signal handler; resume a call that a stop "
       "(SIGSTOP, a frozen cgroup) interrupted",
       {"exit", "exit_group", "rt_sigreturn", "restart_syscall",
        "rt_sigprocmask", "getpid", "futex"}},
  };
  return kGroups;
}

}  // namespace popguard::policy
