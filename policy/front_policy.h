// What the front may do once confined.
#pragma once

#include <span>

#include "policy/confine.h"

namespace popguard::policy {

// The front's seccomp allowlist, in named groups.
std::span<const SyscallGroup> FrontSyscallGroups();

// RLIMIT_NOFILE for the front: its two sockets, stdio, and room for the
// descriptors OpenSSL may hold.
inline constexpr rlim_t kFrontMaxFiles = 16;

}  // namespace popguard::policy
