// Test-only: makes a confined process (the front or the worker) attempt an
// operation its walls must stop.  Linked only into the popguard-test-hooks
// and popguard-worker-test-hooks binaries, which the sandbox tests build and
// run and which are never installed; the installed programs have no such
// command.
#pragma once

#include <string>
#include <string_view>

namespace popguard::policy {

// Attempts `what`: execve, socket, connect, ptrace, fork (no argument), or
// read / write of the file `arg`.  An operation the seccomp filter forbids
// kills the process with SIGSYS and never returns; one that fails returns
// its errno's name ("EACCES"); one that succeeds returns "allowed", which a
// test must flag.
std::string AttemptForbidden(std::string_view what, const std::string& arg);

}  // namespace popguard::policy
