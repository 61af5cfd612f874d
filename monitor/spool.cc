// Runs as root.  Every path is relative to the spool directory opened once
// at the start, names are fixed (the dotlock, one temporary file), nothing
// follows a symbolic link, and the mailbox must be a regular file of the
// user: a user cannot steer these calls at another file.
#include "monitor/spool.h"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <ctime>
#include <thread>

#include <fmt/format.h>

namespace popguard::monitor {

namespace {

// The dotlock is tried this often, this far apart: a delivery holds it for
// well under a second, and the worker's client waits for an answer.
constexpr int kLockAttempts = 10;
constexpr auto kLockDelay = std::chrono::milliseconds(500);
// A dotlock older than this is stale whoever made it.  Postfix breaks its
// own after stale_lock_time (500 s) by the lock's ctime, procmail after
// locktimeout (1024 s); 5 minutes is shorter than both and far longer than
// any delivery.  mtime, not ctime, so that a lock its holder refreshes
// (`dotlockfile -t`, Dovecot's touch) stays fresh and tests can age one.
constexpr time_t kStaleSeconds = 5 * 60;

ipc::SpoolReply Fail(std::string text) { return {0, std::move(text)}; }
ipc::SpoolReply Ok() { return {1, {}}; }

// Whether `name` in `dir` is, without following a link, the file open as
// `fd`.
bool IsOurs(int dir, const std::string& name, int fd) {
  struct stat held, now;
  return fstat(fd, &held) == 0 &&
         fstatat(dir, name.c_str(), &now, AT_SYMLINK_NOFOLLOW) == 0 &&
         held.st_dev == now.st_dev && held.st_ino == now.st_ino;
}

// A lock is stale when it is old, or when it names (as liblockfile and
// popguard write it: a decimal pid and a newline) a process that no longer
// exists on this host.  An empty lock (Postfix writes none) or one naming
// a live process is stale only by age.  Limit: a spool shared over NFS
// with another host would have that host's pids judged here; popguard
// assumes the spool is local, as Debian's /var/mail is.
bool IsStale(int fd, const struct stat& st) {
  if (time(nullptr) - st.st_mtime > kStaleSeconds) return true;
  char buf[32];
  ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return false;
  pid_t pid = 0;
  auto [end, ec] = std::from_chars(buf, buf + n, pid);
  if (ec != std::errc() || pid <= 1) return false;
  if (end != buf + n && *end != '\n') return false;
  return kill(pid, 0) < 0 && errno == ESRCH;
}

}  // namespace

SpoolService::SpoolService(std::string mailbox, const Identity& owner)
    : mailbox_(std::move(mailbox)), owner_(owner) {
  std::size_t slash = mailbox_.rfind('/');
  if (slash == std::string::npos) return;
  std::string dir = slash == 0 ? "/" : mailbox_.substr(0, slash);
  name_ = mailbox_.substr(slash + 1);
  if (name_.empty()) return;
  lock_name_ = name_ + ".lock";
  // Fixed for the session: renaming a directory on the path later does not
  // move these calls elsewhere.
  dir_ = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

SpoolService::~SpoolService() {
  if (dir_ < 0) return;
  RemoveTemp();
  RemoveLock();
  close(dir_);
}

ipc::SpoolReply SpoolService::Handle(ipc::SpoolOp op, int* fd) {
  *fd = -1;
  if (dir_ < 0) return Fail("spool directory unavailable");
  switch (op) {
    case ipc::SpoolOp::kLock: return Lock();
    case ipc::SpoolOp::kUnlock: RemoveLock(); return Ok();
    case ipc::SpoolOp::kCreateTemp: return CreateTemp(fd);
    case ipc::SpoolOp::kCommitTemp: return CommitTemp();
    case ipc::SpoolOp::kDiscardTemp: RemoveTemp(); return Ok();
  }
  return Fail("unknown spool operation");
}

std::optional<struct stat> SpoolService::CheckMailbox() const {
  struct stat st;
  if (fstatat(dir_, name_.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0 ||
      !S_ISREG(st.st_mode) || st.st_uid != owner_.uid)
    return std::nullopt;
  return st;
}

ipc::SpoolReply SpoolService::Lock() {
  if (locked_) return Ok();
  if (!CheckMailbox()) return Fail("mailbox is not a file of its user");

  // The lock appears with our pid already in it: written to a private
  // name first, then linked into place.  Created empty and written after,
  // a monitor killed in between would leave an empty lock that nobody can
  // judge stale until it is old.  Our pid: the monitor holds the lock for
  // the worker and outlives it.
  std::string temp = fmt::format("{}.{}.tmp", lock_name_, getpid());
  unlinkat(dir_, temp.c_str(), 0);
  int fd = openat(dir_, temp.c_str(),
                  O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) return Fail("cannot create the dotlock");
  std::string pid = fmt::format("{}\n", getpid());
  bool written =
      write(fd, pid.data(), pid.size()) == static_cast<ssize_t>(pid.size());
  bool busy = false;
  for (int attempt = 0; written && attempt < kLockAttempts; attempt++) {
    if (linkat(dir_, temp.c_str(), dir_, lock_name_.c_str(), 0) == 0) {
      unlinkat(dir_, temp.c_str(), 0);
      lock_fd_ = fd;
      locked_ = true;
      return Ok();
    }
    busy = errno == EEXIST;
    if (!busy) break;
    if (!BreakStaleLock()) std::this_thread::sleep_for(kLockDelay);
  }
  unlinkat(dir_, temp.c_str(), 0);
  close(fd);
  return Fail(busy ? "mailbox is locked" : "cannot create the dotlock");
}

bool SpoolService::BreakStaleLock() {
  int fd = openat(dir_, lock_name_.c_str(),
                  O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT;  // released meanwhile: try again
  struct stat st;
  bool stale = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && IsStale(fd, st);
  // Still the file judged?  Another process may have broken it and taken
  // a fresh one meanwhile; that one stays.  (Between this check and the
  // unlink a window of microseconds remains, as in every dotlock breaker.)
  bool gone = stale && IsOurs(dir_, lock_name_, fd) &&
              unlinkat(dir_, lock_name_.c_str(), 0) == 0;
  close(fd);
  return gone;
}

void SpoolService::RemoveLock() {
  if (!locked_) return;
  locked_ = false;
  // Only our own: if ours was broken as stale and another taken, that one
  // belongs to someone else.
  if (IsOurs(dir_, lock_name_, lock_fd_)) unlinkat(dir_, lock_name_.c_str(), 0);
  close(lock_fd_);
  lock_fd_ = -1;
}

// A session killed between making its temporary file and the rename
// leaves a full copy of the mailbox behind.  Whoever holds the dotlock and
// the mailbox's one-session lock is the only popguard that can be
// committing, so any such file of this mailbox's user is a leftover.
void SpoolService::RemoveLeftoverTemps() {
  int d = fcntl(dir_, F_DUPFD_CLOEXEC, 0);
  DIR* dir = d >= 0 ? fdopendir(d) : nullptr;
  if (!dir) {
    if (d >= 0) close(d);
    return;
  }
  std::string prefix = name_ + ".popguard.";
  while (dirent* e = readdir(dir)) {
    std::string_view n = e->d_name;
    if (!n.starts_with(prefix) || n.size() != prefix.size() + 16) continue;
    struct stat st;
    if (fstatat(dir_, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISREG(st.st_mode) && st.st_uid == owner_.uid)
      unlinkat(dir_, e->d_name, 0);
  }
  closedir(dir);
}

ipc::SpoolReply SpoolService::CreateTemp(int* fd) {
  if (!locked_) return Fail("the dotlock is not held");
  if (!temp_.empty()) return Fail("a temporary file exists already");
  auto box = CheckMailbox();
  if (!box) return Fail("mailbox is not a file of its user");
  RemoveLeftoverTemps();
  unsigned char rnd[8];
  if (RAND_bytes(rnd, sizeof rnd) != 1) return Fail("no random bytes");
  std::string name = name_ + ".popguard.";
  for (unsigned char c : rnd) name += fmt::format("{:02x}", c);

  int t = openat(dir_, name.c_str(),
                 O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (t < 0) return Fail("cannot create a temporary file");
  // The new mailbox has the old one's owner, group and permissions (0660
  // user:mail on Debian); chown first, since it clears set-id bits.
  int passed = -1;
  if (fchown(t, owner_.uid, box->st_gid) < 0 ||
      fchmod(t, box->st_mode & 0777) < 0 ||
      (passed = fcntl(t, F_DUPFD_CLOEXEC, 0)) < 0) {
    close(t);
    unlinkat(dir_, name.c_str(), 0);
    return Fail("cannot set up the temporary file");
  }
  temp_ = name;
  temp_fd_ = t;
  *fd = passed;
  return Ok();
}

ipc::SpoolReply SpoolService::CommitTemp() {
  if (!locked_ || temp_.empty()) return Fail("nothing to commit");
  if (!CheckMailbox()) return Fail("mailbox is not a file of its user");
  // The name must still be the file we made: in a directory the user can
  // write, it could have been swapped for a link.
  if (!IsOurs(dir_, temp_, temp_fd_)) return Fail("temporary file replaced");
  if (renameat(dir_, temp_.c_str(), dir_, name_.c_str()) < 0)
    return Fail("cannot rename the temporary file");
  temp_.clear();
  close(temp_fd_);
  temp_fd_ = -1;
  if (fsync(dir_) < 0) return Fail("cannot sync the spool directory");
  return Ok();
}

void SpoolService::RemoveTemp() {
  if (temp_.empty()) return;
  if (IsOurs(dir_, temp_, temp_fd_)) unlinkat(dir_, temp_.c_str(), 0);
  temp_.clear();
  close(temp_fd_);
  temp_fd_ = -1;
}

}  // namespace popguard::monitor
