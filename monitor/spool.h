// The monitor's side of an mbox in a shared spool.  /var/mail is root:mail
// 2775 on Debian: a user may write its own mailbox but not create the
// dotlock or a temporary file beside it.  The worker asks, the monitor does
// it, only for the one mailbox it chose at login (ipc::SpoolOp).
#pragma once

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
  std::string mailbox_;
  Identity owner_;
  std::string temp_;  // the temporary file made for this session, if any
  bool locked_ = false;
};

}  // namespace popguard::monitor
