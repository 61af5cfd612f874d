// The per-connection monitor: the only code that decides who a client is.
//
// It forks the front, answers the front's requests from a fixed table
// (which request is legal in which state, how often), runs PAM or checks
// APOP, applies the clear-text policy, writes the audit records, then
// starts the worker as the user with the client stream, and waits for it to
// report how the session ended.
#pragma once

#include <sys/types.h>

#include <string>

#include "common/config.h"
#include "front/tls.h"
#include "monitor/audit.h"

namespace popguard::monitor {

// What the listener settles once (at start and on SIGHUP) so that no
// connection pays for it.
struct Runtime {
  Config config;
  std::string hostname;  // for the APOP challenge
  uid_t front_uid = 0;
  gid_t front_gid = 0;
  front::SslCtxPtr tls;  // null when no certificate is configured
};

// Settles a Runtime from a configuration: looks up the front user, makes
// the empty root directory, checks the worker binary, loads the TLS
// certificate and key.  On failure returns
// a message for the admin.
std::expected<Runtime, std::string> PrepareRuntime(const Config& config);

// Serves one connection to its end.  `client_fd` is the connection;
// `facts` carries the addresses.  With `proxy_protocol` (a connection
// from a trusted balancer on a proxy listener) the client's address is
// read first from a PROXY header (common/proxy.h).  Returns the process
// exit status.
int RunMonitor(const Runtime& rt, int client_fd, SessionFacts facts,
               bool proxy_protocol = false);

// Fills the address fields of `facts` from a connected socket and makes a
// fresh session id.
void DescribeConnection(int fd, SessionFacts* facts);

}  // namespace popguard::monitor
