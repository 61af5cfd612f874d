#include "policy/landlock.h"

#include <linux/landlock.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace popguard::policy {
namespace {

// Rights and fields newer than Debian 12's headers, by the ABI that added
// them (Documentation/userspace-api/landlock.rst).
constexpr std::uint64_t kFsTruncate = 1ULL << 14;        // ABI 3
constexpr std::uint64_t kFsIoctlDev = 1ULL << 15;        // ABI 5
constexpr std::uint64_t kNetBindTcp = 1ULL << 0;         // ABI 4
constexpr std::uint64_t kNetConnectTcp = 1ULL << 1;      // ABI 4
constexpr std::uint64_t kScopeAbstractUnix = 1ULL << 0;  // ABI 6
constexpr std::uint64_t kScopeSignal = 1ULL << 1;        // ABI 6

// The kernel reads as many fields as the size we pass says; older kernels
// reject a size they do not know, so the size follows the ABI.
struct RulesetAttr {
  std::uint64_t handled_access_fs;
  std::uint64_t handled_access_net;
  std::uint64_t scoped;
};

struct PathBeneathAttr {
  std::uint64_t allowed_access;
  std::int32_t parent_fd;
} __attribute__((packed));

constexpr std::uint64_t kFsAbi1 =
    LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |
    LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR |
    LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |
    LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR |
    LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_SOCK |
    LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_BLOCK |
    LANDLOCK_ACCESS_FS_MAKE_SYM;

std::uint64_t HandledFs(int abi) {
  std::uint64_t fs = kFsAbi1;
  if (abi >= 2) fs |= LANDLOCK_ACCESS_FS_REFER;
  if (abi >= 3) fs |= kFsTruncate;
  if (abi >= 5) fs |= kFsIoctlDev;
  return fs;
}

// The rights a rule grants, limited to what the kernel handles; rights on
// a file are only those that make sense for a file.
std::uint64_t Granted(const PathRule& r, std::uint64_t handled) {
  std::uint64_t read = LANDLOCK_ACCESS_FS_READ_FILE;
  std::uint64_t write = LANDLOCK_ACCESS_FS_WRITE_FILE | kFsTruncate;
  if (r.directory) {
    read |= LANDLOCK_ACCESS_FS_READ_DIR;
    // Maildir delivery and expunge: new files, renames new/ -> cur/ (REFER
    // crosses directories), removal.
    write |= LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_REMOVE_FILE |
             LANDLOCK_ACCESS_FS_REFER;
  }
  return (read | (r.write ? write : 0)) & handled;
}

}  // namespace

int LandlockAbi() {
  long abi = syscall(SYS_landlock_create_ruleset, nullptr, 0,
                     LANDLOCK_CREATE_RULESET_VERSION);
  return abi < 0 ? 0 : static_cast<int>(abi);
}

std::expected<LandlockResult, std::string> RestrictToPaths(
    std::span<const PathRule> rules) {
  int abi = LandlockAbi();
  if (abi == 0) return LandlockResult::kUnsupported;

  RulesetAttr attr{};
  attr.handled_access_fs = HandledFs(abi);
  std::size_t size = sizeof attr.handled_access_fs;
  if (abi >= 4) {
    attr.handled_access_net = kNetBindTcp | kNetConnectTcp;
    size = offsetof(RulesetAttr, scoped);
  }
  if (abi >= 6) {
    attr.scoped = kScopeAbstractUnix | kScopeSignal;
    size = sizeof attr;
  }
  long fd = syscall(SYS_landlock_create_ruleset, &attr, size, 0);
  if (fd < 0)
    return std::unexpected(
        fmt::format("landlock_create_ruleset: {}", std::strerror(errno)));
  for (const PathRule& r : rules) {
    PathBeneathAttr pb{Granted(r, attr.handled_access_fs), r.fd};
    if (syscall(SYS_landlock_add_rule, fd, LANDLOCK_RULE_PATH_BENEATH, &pb,
                0) != 0) {
      int err = errno;
      close(static_cast<int>(fd));
      return std::unexpected(
          fmt::format("landlock_add_rule: {}", std::strerror(err)));
    }
  }
  // landlock_restrict_self needs no_new_privs (or CAP_SYS_ADMIN).
  bool ok = prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
            syscall(SYS_landlock_restrict_self, fd, 0) == 0;
  int err = errno;
  close(static_cast<int>(fd));
  if (!ok)
    return std::unexpected(
        fmt::format("landlock_restrict_self: {}", std::strerror(err)));
  return LandlockResult::kEnforced;
}

}  // namespace popguard::policy
