// The mechanics of confinement, shared by the front and the worker.  What
// each process may do is data in front_policy.cc and worker_policy.cc; this
// file only applies it.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <expected>
#include <span>
#include <string>
#include <vector>

namespace popguard::policy {

// One named group of system calls and the reason the process needs them.
struct SyscallGroup {
  const char* name;
  const char* why;
  std::vector<const char*> syscalls;  // names as libseccomp knows them
};

// Becomes uid/gid with exactly `groups` as supplementary groups, and drops
// every capability, the bounding set included (libcap-ng).  Must run as
// root.  Fails closed: on any error the caller must exit.
std::expected<void, std::string> SwitchUser(uid_t uid, gid_t gid,
                                            const std::vector<gid_t>& groups);

// no_new_privs, not dumpable, no core files.
std::expected<void, std::string> HardenProcess();

// Sets an rlimit's soft and hard values.
std::expected<void, std::string> LimitResource(int resource, rlim_t value);

// Installs a seccomp filter that allows the listed calls and kills the
// process (SIGSYS) on any other.
//
// With report_fd >= 0 (the SOCK_SEQPACKET channel to the monitor), a
// forbidden call first raises a SIGSYS that a handler catches: it sends the
// monitor one ipc::Type::kSandboxViolation message naming the call, then
// issues the call again with SIGSYS blocked, which the kernel answers by
// killing the process.  The call itself never runs either way; the report
// only lets the monitor's record say which call it was.
std::expected<void, std::string> InstallSeccomp(
    std::span<const SyscallGroup> groups, int report_fd = -1);

}  // namespace popguard::policy
