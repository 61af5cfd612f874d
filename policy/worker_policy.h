// The worker's seccomp allowlist.  The worker confines itself with it
// before it reads the mailbox or a byte from the client; any call not
// listed kills it with SIGSYS, and the monitor records the kill.
#pragma once

#include <span>

#include "policy/confine.h"

namespace popguard::policy {

// The calls the worker needs to serve TRANSACTION and UPDATE on a mailbox
// it opens after the filter is installed: reading the mailbox directory
// and message files or the mbox file, locking them, removing messages or
// writing the rewritten mbox at QUIT, talking on the descriptors it was
// started with, and memory for malloc.  No exec, no new sockets, no
// signals to other processes, no ptrace, no changing identity.
std::span<const SyscallGroup> WorkerSyscallGroups();

}  // namespace popguard::policy
