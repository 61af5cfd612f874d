// Landlock: unprivileged filesystem (and, on newer kernels, network and
// IPC scope) restrictions.  The running kernel's ABI is asked at run time:
// Debian 12's headers stop at ABI 2, while the kernels it runs on offer
// more, and each ABI adds rights that a ruleset must name to restrict.
#pragma once

#include <cstdint>
#include <expected>
#include <span>
#include <string>

namespace popguard::policy {

// The kernel's Landlock ABI version, or 0 when Landlock is missing or off.
int LandlockAbi();

// What a process may do beneath one path (a directory or a file).
struct PathRule {
  int fd;  // an O_PATH (or any) descriptor of the directory or file
  bool directory;
  bool write;  // create, write, truncate, remove, rename within
};

enum class LandlockResult {
  kEnforced,     // the ruleset is in force
  kUnsupported,  // the kernel has no Landlock: nothing was restricted
};

// Restricts the calling process (and its future children) to `rules`: every
// filesystem right the kernel knows is handled, so anything not granted is
// denied (EACCES).  With ABI 4 and later, TCP bind and connect are denied
// too; with ABI 6 and later, abstract unix sockets and signals outside the
// process's own Landlock domain.  An empty `rules` means no file at all.
std::expected<LandlockResult, std::string> RestrictToPaths(
    std::span<const PathRule> rules);

}  // namespace popguard::policy
