// The clear-text policy: whether a password, or an APOP exchange, may be
// used on a given link.  The monitor decides with these functions; the
// front only learns the answers (to build CAPA) and cannot change them.
#pragma once

#include <string>
#include <vector>

#include "common/config.h"

namespace popguard::policy {

// What the monitor knows about the link a client is on.
struct Link {
  bool tls = false;         // TLS is established between the client and us
  std::string client_addr;  // numeric, as the monitor logs it
};

struct Verdict {
  bool allowed = false;
  std::string reason;  // for a refusal: words a user can act on
};

// Whether `addr` (numeric IPv4 or IPv6) lies in one of `networks`
// ("192.0.2.0/24", "2001:db8::/32", or a single address).  An IPv4-mapped
// IPv6 address matches the IPv4 networks.
bool AddressInNetworks(const std::string& addr,
                       const std::vector<std::string>& networks);

// USER/PASS and AUTH PLAIN.
Verdict PasswordAllowed(const Config& config, const Link& link);

// APOP.
Verdict ApopAllowed(const Config& config, const Link& link);

}  // namespace popguard::policy
