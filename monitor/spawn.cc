#include "monitor/spawn.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <selinux/context.h>
#include <selinux/selinux.h>
#include <signal.h>
#include <unistd.h>

#include <climits>

#include "front/front.h"
#include "policy/confine.h"

namespace popguard::monitor {
namespace {

// Exit status of a child that could not be set up; the monitor logs it.
constexpr int kExitSetup = 120;

// The listener blocks the signals it reads through a signalfd; a child
// must start with none blocked and default actions.
void ResetSignals() {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGPIPE})
    signal(sig, SIG_DFL);
}

// Puts `fds` at 3, 4, ... (in order), /dev/null on 0-2, closes the rest.
bool ArrangeFds(std::initializer_list<int> fds) {
  std::vector<int> high;
  for (int fd : fds) {
    int h = fcntl(fd, F_DUPFD, 16);
    if (h < 0) return false;
    high.push_back(h);
  }
  int target = 3;
  for (int h : high) {
    if (dup2(h, target++) < 0) return false;
  }
  int null = open("/dev/null", O_RDWR);
  if (null < 0) return false;
  for (int i = 0; i < 3; i++)
    if (dup2(null, i) < 0) return false;
  return close_range(static_cast<unsigned>(target), UINT_MAX, 0) == 0;
}

// The front is forked, not executed, so SELinux cannot move it into its
// domain on exec: it moves itself, while it still sees /proc and before
// no_new_privs.  The user, role and level of the context are kept.  With
// SELinux off, or the module not loaded and not enforcing, it stays where
// it is.
bool EnterFrontDomain() {
  if (is_selinux_enabled() <= 0) return true;
  char* current = nullptr;
  if (getcon(&current) != 0) return security_getenforce() != 1;
  context_t ctx = context_new(current);
  freecon(current);
  bool ok = ctx && context_type_set(ctx, "popguard_front_t") == 0 &&
            setcon(context_str(ctx)) == 0;
  if (ctx) context_free(ctx);
  return ok || security_getenforce() != 1;
}

}  // namespace

bool LookupIdentity(const std::string& name, Identity* out) {
  passwd* pw = getpwnam(name.c_str());
  if (!pw) return false;
  out->name = pw->pw_name;
  out->uid = pw->pw_uid;
  out->gid = pw->pw_gid;
  out->home = pw->pw_dir;
  int n = 64;
  for (int tries = 0; tries < 4; tries++) {
    out->groups.resize(static_cast<std::size_t>(n));
    int got = n;
    if (getgrouplist(pw->pw_name, pw->pw_gid, out->groups.data(), &got) >= 0) {
      out->groups.resize(static_cast<std::size_t>(got));
      return true;
    }
    n = got > n ? got : n * 2;
  }
  return false;
}

pid_t StartFront(int client_fd, int sock, uid_t uid, gid_t gid,
                 const std::string& empty_dir, SSL_CTX* tls) {
  pid_t pid = fork();
  if (pid != 0) return pid;

  ResetSignals();
  if (!ArrangeFds({client_fd, sock}) || !EnterFrontDomain()) _exit(kExitSetup);
  front::FrontParams p;
  p.client_fd = 3;
  p.monitor_fd = 4;
  p.uid = uid;
  p.gid = gid;
  p.empty_dir = empty_dir;
  p.tls = tls;
  front::RunFront(p);
}

pid_t StartWorker(const std::string& path, int client_fd, int sock,
                  const Identity& who) {
  pid_t pid = fork();
  if (pid != 0) return pid;

  ResetSignals();
  if (!ArrangeFds({client_fd, sock})) _exit(kExitSetup);
  if (chdir("/") != 0) _exit(kExitSetup);
  if (!policy::SwitchUser(who.uid, who.gid, who.groups)) _exit(kExitSetup);

  // A fresh exec: nothing of the monitor's memory (PAM's state, the
  // pop.auth key) survives into the worker, and its environment is empty.
  char* const argv[] = {const_cast<char*>("popguard-worker"), nullptr};
  char* const envp[] = {nullptr};
  execve(path.c_str(), argv, envp);
  _exit(kExitSetup);
}

}  // namespace popguard::monitor
