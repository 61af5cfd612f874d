#include "policy/auth_policy.h"

namespace popguard::policy {

Verdict PasswordAllowed(const Config& config, const Link& link) {
  switch (config.cleartext) {
    case CleartextPolicy::kAlways:
      return {true, ""};
    case CleartextPolicy::kNever:
      return {false, "passwords are not accepted here; use APOP"};
    case CleartextPolicy::kTlsOnly:
      if (link.tls) return {true, ""};
      return {false,
              "passwords are accepted only over TLS; use STLS or POP3S"};
  }
  return {false, "policy error"};
}

Verdict ApopAllowed(const Config& config, const Link& link) {
  switch (config.apop) {
    case ApopPolicy::kAllow:
      return {true, ""};
    case ApopPolicy::kNever:
      return {false, "APOP is not accepted here"};
    case ApopPolicy::kTlsOnly:
      if (link.tls) return {true, ""};
      return {false, "APOP is accepted only over TLS"};
  }
  return {false, "policy error"};
}

}  // namespace popguard::policy
