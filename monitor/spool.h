// The monitor's side of an mbox in a shared spool.  /var/mail is root:mail
// 2775 on Debian: a user may write its own mailbox but not create the
// dotlock or a temporary file beside it.  The worker asks, the monitor does
// it, only for the one mailbox it chose at login (ipc::SpoolOp).
//
// What each operation does (worker/mbox.h says when the worker asks):
//   kLock        creates `<mailbox>.lock` with O_EXCL, holding the
//                monitor's pid; a stale lock (older than 5 minutes, or
//                naming a pid that no longer runs here) is removed and
//                retaken; a live one is retried for about 5 seconds.
//   kUnlock      removes the dotlock if it is still the one made here.
//   kCreateTemp  creates `<mailbox>.popguard.<random hex>` with O_EXCL,
//                owned by the user and the mailbox's group, with the
//                mailbox's permissions, and passes its descriptor.  Only
//                under the dotlock, one at a time.
//   kCommitTemp  renames it over the mailbox and fsyncs the directory.
//   kDiscardTemp removes it.
// The mailbox must be a regular file owned by the user, checked without
// following links at every step that touches it; every call works relative
// to the directory opened at construction.  A request that cannot be done
// is answered ok = 0 with a reason; none of them ends the session.
#pragma once

#include <sys/stat.h>

#include <optional>
#include <string>

#include "common/ipc.h"
#include "monitor/spawn.h"

namespace popguard::monitor {

class SpoolService {
 public:
  // `mailbox` is the absolute path of the user's mbox; `owner` the user.
  SpoolService(std::string mailbox, const Identity& owner);
  // Releases a dotlock still held and removes a temporary file left
  // behind, however the worker ended.
  ~SpoolService();
  SpoolService(const SpoolService&) = delete;
  SpoolService& operator=(const SpoolService&) = delete;

  // Performs `op`.  For kCreateTemp, *fd receives the new file's
  // descriptor, which the caller sends with the reply and then closes.
  ipc::SpoolReply Handle(ipc::SpoolOp op, int* fd);

 private:
  // The mailbox's attributes if it is a regular file owned by the user.
  std::optional<struct stat> CheckMailbox() const;
  ipc::SpoolReply Lock();
  // Removes the dotlock if it is stale; true if the caller should retry at
  // once.
  bool BreakStaleLock();
  void RemoveLock();
  void RemoveLeftoverTemps();
  ipc::SpoolReply CreateTemp(int* fd);
  ipc::SpoolReply CommitTemp();
  void RemoveTemp();

  std::string mailbox_;
  Identity owner_;
  int dir_ = -1;           // the mailbox's directory
  std::string name_;       // the mailbox's name in it
  std::string lock_name_;  // name_ + ".lock"
  std::string temp_;       // the temporary file made for this session, if any
  // The dotlock and the temporary file made here, held open: an inode in
  // use cannot be reused, so comparing device and inode numbers with what
  // the name holds now tells ours from a file someone put in its place.
  int lock_fd_ = -1;
  int temp_fd_ = -1;
  bool locked_ = false;
};

}  // namespace popguard::monitor
