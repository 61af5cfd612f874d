// The listener: binds the configured addresses (or takes the sockets
// systemd passed), forks a monitor for each
// connection, and never reads a client byte itself.  SIGTERM stops
// accepting and lets the sessions finish; SIGHUP re-reads the
// configuration (a bad file is logged and the old settings stay).
#pragma once

#include <string>
#include <vector>

#include "monitor/activation.h"
#include "monitor/monitor.h"

namespace popguard::monitor {

// Standalone mode.  Returns the process exit status.  With `activated`
// sockets (from systemd, see activation.h) those are served and the
// configured listen addresses are not bound, at start or on a reload.
int RunListener(const std::string& config_path, Runtime rt,
                std::vector<ActivatedSocket> activated);

// inetd mode: the connection is on descriptor 0, as xinetd starts us.
// With implicit_tls (--inetd --tls) the client starts with a handshake,
// for an xinetd service on port 995.
int RunInetd(const Runtime& rt, bool implicit_tls);

}  // namespace popguard::monitor
