#include "worker/spool_client.h"

#include "common/ipc.h"

namespace popguard::worker {

namespace {

// Sends one request and waits for its reply; returns whether the monitor
// said yes, and hands over a descriptor if one came along.
bool Ask(int sock, ipc::SpoolOp op, UniqueFd* fd = nullptr) {
  ipc::SpoolRequest req;
  req.op = op;
  if (!ipc::SendMessage(sock, req)) return false;
  auto msg = ipc::Receive(sock);
  if (!msg) return false;
  UniqueFd got(msg->fd);
  ipc::SpoolReply reply;
  if (!ipc::Decode(*msg, &reply) || !reply.ok) return false;
  if (fd) *fd = std::move(got);
  return true;
}

}  // namespace

bool MonitorSpool::Lock() { return Ask(sock_, ipc::SpoolOp::kLock); }

void MonitorSpool::Unlock() { Ask(sock_, ipc::SpoolOp::kUnlock); }

UniqueFd MonitorSpool::CreateTemp() {
  UniqueFd fd;
  if (!Ask(sock_, ipc::SpoolOp::kCreateTemp, &fd)) return UniqueFd();
  return fd;
}

bool MonitorSpool::CommitTemp() {
  return Ask(sock_, ipc::SpoolOp::kCommitTemp);
}

void MonitorSpool::DiscardTemp() { Ask(sock_, ipc::SpoolOp::kDiscardTemp); }

}  // namespace popguard::worker
