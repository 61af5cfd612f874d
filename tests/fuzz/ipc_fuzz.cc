// Fuzz target: the monitor's message decoders (common/ipc.h), the code by
// which the root process reads what its hostile children send.
//
// The input is a raw message as it would arrive on the socketpair: a
// 16-bit type, then the body.  It is sent for real over an AF_UNIX
// SOCK_SEQPACKET pair and read back with Receive, then handed to every
// decoder.  At most one decoder may accept it (the one for its type),
// and what it accepted must encode back to exactly the body: a decoder
// that skipped, trimmed or invented a byte would break that.
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "common/ipc.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using popguard::fuzz::Check;
namespace ipc = popguard::ipc;

// Both ends of one socketpair, made once: a new pair per input would
// measure the kernel, not the decoders.
int pair_fds[2] = {-1, -1};

std::string EncodeAny(const ipc::SandboxViolation& m) {
  ipc::Writer w;
  w.U32(m.syscall).U32(m.arch);
  return w.bytes();
}

template <typename M>
std::string EncodeAny(const M& m) {
  return ipc::Encode(m);
}

// Decodes msg as an M; if that works, checks the round trip and that the
// type was M's.  Returns 1 when it decoded.
template <typename M>
int TryDecode(const ipc::Message& msg, ipc::Type type) {
  M m;
  if (!ipc::Decode(msg, &m)) return 0;
  Check(msg.type == type, "a decoder accepts only its own type");
  Check(EncodeAny(m) == msg.body, "Encode(Decode(body)) == body");
  return 1;
}

int DecodeAll(const ipc::Message& msg) {
  using T = ipc::Type;
  return TryDecode<ipc::Hello>(msg, T::kHello) +
         TryDecode<ipc::AuthPass>(msg, T::kAuthPass) +
         TryDecode<ipc::AuthApop>(msg, T::kAuthApop) +
         TryDecode<ipc::AuthResult>(msg, T::kAuthResult) +
         TryDecode<ipc::Handoff>(msg, T::kHandoff) +
         TryDecode<ipc::Refusal>(msg, T::kRefusal) +
         TryDecode<ipc::TlsResult>(msg, T::kTlsResult) +
         TryDecode<ipc::WorkerInit>(msg, T::kWorkerInit) +
         TryDecode<ipc::SessionEnd>(msg, T::kSessionEnd) +
         TryDecode<ipc::SpoolRequest>(msg, T::kSpoolRequest) +
         TryDecode<ipc::SpoolReply>(msg, T::kSpoolReply) +
         TryDecode<ipc::SandboxViolation>(msg, T::kSandboxViolation);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair_fds) != 0)
    std::abort();
  // Room for the largest message and then some, so that the send of an
  // oversized one is refused by Receive's checks and not by the kernel.
  int room = 4 * static_cast<int>(ipc::kMaxMessage);
  setsockopt(pair_fds[0], SOL_SOCKET, SO_SNDBUF, &room, sizeof room);
  setsockopt(pair_fds[1], SOL_SOCKET, SO_RCVBUF, &room, sizeof room);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  ssize_t sent = send(pair_fds[0], data, size, MSG_DONTWAIT);
  if (sent < 0) return 0;  // larger than the socket takes: not a message
  Check(static_cast<std::size_t>(sent) == size, "one send is one message");

  auto got = ipc::Receive(pair_fds[1]);
  if (size == 0) {
    // On SOCK_SEQPACKET an empty datagram reads as the peer's close.
    Check(!got, "Receive refuses an empty message");
    return 0;
  }
  bool fits = size >= sizeof(std::uint16_t) && size <= ipc::kMaxMessage;
  if (!fits) {
    Check(!got && got.error() == ipc::Error::kMalformed,
          "Receive refuses a message shorter than a type or too long");
    return 0;
  }
  Check(got.has_value(), "Receive takes a message of legal size");
  std::uint16_t type;
  std::memcpy(&type, data, sizeof type);
  Check(
      static_cast<std::uint16_t>(got->type) == type &&
          got->body == std::string_view(reinterpret_cast<const char*>(data) + 2,
                                        size - 2) &&
          got->fd == -1,
      "Receive returns the type and body as sent");

  Check(DecodeAll(*got) <= 1, "at most one decoder accepts a message");
  return 0;
}
