#include "policy/confine.h"

#include <cap-ng.h>
#include <grp.h>
#include <seccomp.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstring>
#include "common/ipc.h"

namespace popguard::policy {

namespace {

std::unexpected<std::string> Failed(std::string_view what) {
  return std::unexpected(fmt::format("{}: {}", what, std::strerror(errno)));
}

}  // namespace

std::expected<void, std::string> SwitchUser(uid_t uid, gid_t gid,
                                            const std::vector<gid_t>& groups) {
  if (uid == 0 || gid == 0)
    return std::unexpected(std::string("refusing to run a child as root"));

  // Our chosen groups are set first: CAPNG_INIT_SUPP_GRP would replace them
  // with the user's full list.  Then libcap-ng clears the bounding set
  // (which needs CAP_SETPCAP, so before the change), switches the ids and
  // applies an empty capability state.
  if (setgroups(groups.size(), groups.data()) != 0) return Failed("setgroups");
  capng_clear(CAPNG_SELECT_BOTH);
  if (capng_change_id(static_cast<int>(uid), static_cast<int>(gid),
                      CAPNG_CLEAR_BOUNDING) != 0)
    return std::unexpected(std::string("capng_change_id failed"));

  // Checked, not assumed: a process that still holds root must not serve.
  if (getuid() != uid || geteuid() != uid || getgid() != gid ||
      getegid() != gid || setuid(0) == 0)
    return std::unexpected(std::string("identity change did not hold"));
  if (capng_have_capabilities(CAPNG_SELECT_CAPS) != CAPNG_NONE)
    return std::unexpected(std::string("capabilities remain"));
  return {};
}

std::expected<void, std::string> HardenProcess() {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    return Failed("no_new_privs");
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return Failed("dumpable");
  return LimitResource(RLIMIT_CORE, 0);
}

std::expected<void, std::string> LimitResource(int resource, rlim_t value) {
  rlimit rl{value, value};
  if (setrlimit(static_cast<__rlimit_resource>(resource), &rl) != 0)
    return Failed("setrlimit");
  return {};
}

namespace {

int report_fd = -1;

// Async-signal-safe: a fixed message built on the stack, one sendto.
void OnForbiddenCall(int, siginfo_t* info, void*) {
  char msg[sizeof(std::uint16_t) + 2 * sizeof(std::uint32_t)];
  auto type = static_cast<std::uint16_t>(ipc::Type::kSandboxViolation);
  auto nr = static_cast<std::uint32_t>(info->si_syscall);
  auto arch = static_cast<std::uint32_t>(info->si_arch);
  std::memcpy(msg, &type, sizeof type);
  std::memcpy(msg + sizeof type, &nr, sizeof nr);
  std::memcpy(msg + sizeof type + sizeof nr, &arch, sizeof arch);
  // write(), which every filter allows; on a SOCK_SEQPACKET socket it
  // sends one message.
  ssize_t sent = write(report_fd, msg, sizeof msg);
  (void)sent;
  // SIGSYS is blocked while this handler runs; the kernel meets a second
  // forbidden call by restoring the default action and killing us.
  syscall(info->si_syscall, 0, 0, 0, 0, 0, 0);
  _exit(127);  // not reached
}

}  // namespace

std::expected<void, std::string> InstallSeccomp(
    std::span<const SyscallGroup> groups, int report) {
  std::uint32_t action = SCMP_ACT_KILL_PROCESS;
  if (report >= 0) {
    report_fd = report;
    struct sigaction sa {};
    sa.sa_sigaction = OnForbiddenCall;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSYS, &sa, nullptr) != 0) return Failed("sigaction");
    action = SCMP_ACT_TRAP;
  }
  scmp_filter_ctx ctx = seccomp_init(action);
  if (!ctx) return std::unexpected(std::string("seccomp_init failed"));
  for (const SyscallGroup& g : groups) {
    for (const char* name : g.syscalls) {
      int nr = seccomp_syscall_resolve_name(name);
      // An unknown name is a policy typo; fail rather than run with less
      // (or more) than the policy says.
      if (nr == __NR_SCMP_ERROR ||
          seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0) != 0) {
        seccomp_release(ctx);
        return std::unexpected(
            fmt::format("seccomp: cannot allow {} ({})", name, g.name));
      }
    }
  }
  int rc = seccomp_load(ctx);
  seccomp_release(ctx);
  if (rc != 0)
    return std::unexpected(fmt::format("seccomp_load: {}", std::strerror(-rc)));
  return {};
}

}  // namespace popguard::policy
