#include "monitor/spool.h"

namespace popguard::monitor {

SpoolService::SpoolService(std::string mailbox, const Identity& owner)
    : mailbox_(std::move(mailbox)), owner_(owner) {}

SpoolService::~SpoolService() = default;

ipc::SpoolReply SpoolService::Handle(ipc::SpoolOp, int* fd) {
  *fd = -1;
  return {0, "mbox spool operations are not available"};
}

}  // namespace popguard::monitor
