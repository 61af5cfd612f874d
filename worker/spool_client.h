// What the worker asks of the monitor to update an mbox in a shared spool.
//
// /var/mail is root:mail 2775 on Debian and users are not in group mail:
// the user may rewrite its own mailbox file but cannot create the dotlock
// (`USER.lock`) or a new file beside it.  The monitor does both, for the one
// mailbox it chose at login (monitor/spool.h); the worker asks over its IPC
// socket with ipc::SpoolRequest and waits for each ipc::SpoolReply.
//
// Spool is the interface, so that tests can stand in for the monitor.
#pragma once

#include "worker/unique_fd.h"

namespace popguard::worker {

class Spool {
 public:
  virtual ~Spool() = default;

  // Takes the dotlock, breaking a stale one; false if it stayed taken (the
  // monitor retries for a few seconds first) or could not be made.
  virtual bool Lock() = 0;
  // Releases the dotlock if this session holds it.
  virtual void Unlock() = 0;
  // A new empty file beside the mailbox with the mailbox's owner, group
  // and mode, open for writing; invalid on failure.  Only under the lock.
  virtual UniqueFd CreateTemp() = 0;
  // Renames that file over the mailbox and makes the rename durable.
  virtual bool CommitTemp() = 0;
  // Removes that file (a rewrite that was given up).
  virtual void DiscardTemp() = 0;
};

// The monitor's side over the IPC socket the worker was started with.  A
// reply that does not decode is a failure; the session then ends without
// touching the mailbox.
class MonitorSpool final : public Spool {
 public:
  explicit MonitorSpool(int sock) : sock_(sock) {}
  bool Lock() override;
  void Unlock() override;
  UniqueFd CreateTemp() override;
  bool CommitTemp() override;
  void DiscardTemp() override;

 private:
  int sock_;
};

}  // namespace popguard::worker
