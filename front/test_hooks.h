// Test-only: makes the confined front attempt an operation its walls must
// stop.  Compiled only into the popguard-test-hooks binary, which is built
// for the sandbox tests and never installed; the installed popguard has no
// such command.
#pragma once

#include <string>
#include <string_view>

namespace popguard::front {

// Attempts `what` (execve, socket, connect, ptrace, fork, open-shadow,
// open-popauth, write-file).  An operation the seccomp filter forbids
// kills the process with SIGSYS and never returns; one that fails returns
// its error ("EACCES"); one that succeeds returns "allowed", which a test
// must flag.
std::string AttemptForbidden(std::string_view what);

}  // namespace popguard::front
