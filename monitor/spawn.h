// Starting the monitor's children.  Both run in a process that has just
// forked from root; everything here happens before they read a client byte.
#pragma once

#include <openssl/ssl.h>
#include <sys/types.h>

#include <string>
#include <vector>

namespace popguard::monitor {

// Who a child runs as.
struct Identity {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  std::string home;
};

// The user's identity from the password and group databases, or nothing.
bool LookupIdentity(const std::string& name, Identity* out);

// Forks the front.  The child keeps only client_fd and sock, then confines
// itself (front/front.h).  Returns the pid, or -1.
pid_t StartFront(int client_fd, int sock, uid_t uid, gid_t gid,
                 const std::string& empty_dir, SSL_CTX* tls);

// Forks and execs the worker as `who`, with an empty environment, the
// client stream on fd 3 and the monitor's socket on fd 4 (worker/main.cc).
// Returns the pid, or -1.
pid_t StartWorker(const std::string& path, int client_fd, int sock,
                  const Identity& who);

}  // namespace popguard::monitor
