// The front: the only process that reads a client's bytes before it has
// authenticated.  It is forked by the monitor and confines itself at once:
// an empty root directory, an unprivileged user, no capabilities, and a
// seccomp filter that leaves it its two sockets and nothing else.  It
// speaks the AUTHORIZATION state and asks the monitor, which alone decides,
// whether a login succeeds.
#pragma once

#include <sys/types.h>

#include <openssl/ssl.h>

#include <string>

namespace popguard::front {

struct FrontParams {
  int client_fd = -1;   // the client's connection
  int monitor_fd = -1;  // SOCK_SEQPACKET to the monitor
  uid_t uid = 0;        // the unprivileged login user
  gid_t gid = 0;
  std::string empty_dir;   // becomes the root directory
  SSL_CTX* tls = nullptr;  // the server context, if TLS is configured
};

// How the front ended, as its exit status, for the monitor's record.
enum ExitStatus : int {
  kExitQuit = 0,          // QUIT before logging in
  kExitHandedOff = 10,    // logged in; the pipelined bytes went to the monitor
  kExitDisconnect = 11,   // the client went away
  kExitTimeout = 12,      // no login within the login timeout
  kExitBadCommands = 13,  // too many bad commands
  kExitFailures = 14,     // too many failed logins
  kExitMonitor = 15,      // the monitor's channel broke or misbehaved
  kExitConfine = 16,      // could not confine itself: served nothing
  kExitTls = 17,          // the TLS handshake failed
};

// Confines the process, then serves until the client logs in (the
// pipelined bytes go to the monitor), quits, times out or fails too often.
// Never returns; the exit status says how it ended (0: handed off or quit).
[[noreturn]] void RunFront(const FrontParams& params);

}  // namespace popguard::front
