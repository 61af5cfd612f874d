// The clear-text policy: whether a password, or an APOP exchange, may be
// used on a given link.  The monitor decides with these functions; the
// front only learns the answers (to build CAPA) and cannot change them.
#pragma once

#include <string>

#include "common/config.h"

namespace popguard::policy {

// What the monitor knows about the link a client is on.
struct Link {
  bool tls = false;  // TLS is established between the client and us
};

struct Verdict {
  bool allowed = false;
  std::string reason;  // for a refusal: words a user can act on
};

// USER/PASS and AUTH PLAIN.
Verdict PasswordAllowed(const Config& config, const Link& link);

// APOP.
Verdict ApopAllowed(const Config& config, const Link& link);

}  // namespace popguard::policy
