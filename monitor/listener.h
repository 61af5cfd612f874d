// The listener: binds the configured addresses, forks a monitor for each
// connection, and never reads a client byte itself.  SIGTERM stops
// accepting and lets the sessions finish; SIGHUP re-reads the
// configuration (a bad file is logged and the old settings stay).
#pragma once

#include <string>

#include "monitor/monitor.h"

namespace popguard::monitor {

// Standalone mode.  Returns the process exit status.
int RunListener(const std::string& config_path, Runtime rt);

// inetd mode: the connection is on descriptor 0, as xinetd starts us.
// With implicit_tls (--inetd --tls) the client starts with a handshake,
// for an xinetd service on port 995.
int RunInetd(const Runtime& rt, bool implicit_tls);

}  // namespace popguard::monitor
