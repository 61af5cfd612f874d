#include "policy/auth_policy.h"

#include <arpa/inet.h>

#include <cstdlib>
#include <cstring>

namespace popguard::policy {
namespace {

// An address as 16 bytes; IPv4 as an IPv4-mapped IPv6 address, so that one
// comparison serves both families.
bool ToBytes(const std::string& text, unsigned char out[16], bool* v4) {
  in_addr a4;
  if (inet_pton(AF_INET, text.c_str(), &a4) == 1) {
    std::memset(out, 0, 10);
    out[10] = out[11] = 0xff;
    std::memcpy(out + 12, &a4, 4);
    *v4 = true;
    return true;
  }
  *v4 = false;
  return inet_pton(AF_INET6, text.c_str(), out) == 1;
}

bool InNetwork(const unsigned char addr[16], const std::string& net) {
  std::size_t slash = net.find('/');
  unsigned char base[16];
  bool v4;
  if (!ToBytes(net.substr(0, slash), base, &v4)) return false;
  unsigned bits = 128;
  if (slash != std::string::npos) {
    const char* digits = net.c_str() + slash + 1;
    char* end = nullptr;
    unsigned long n = std::strtoul(digits, &end, 10);
    if (*digits < '0' || *digits > '9' || *end != '\0' || n > (v4 ? 32u : 128u))
      return false;
    bits = static_cast<unsigned>(n) + (v4 ? 96 : 0);
  }
  for (unsigned i = 0; i < 16 && bits > 0; i++) {
    unsigned take = bits >= 8 ? 8 : bits;
    auto mask = static_cast<unsigned char>(0xff << (8 - take));
    if ((addr[i] & mask) != (base[i] & mask)) return false;
    bits -= take;
  }
  return true;
}

}  // namespace

bool AddressInNetworks(const std::string& addr,
                       const std::vector<std::string>& networks) {
  unsigned char a[16];
  bool v4;
  if (!ToBytes(addr, a, &v4)) return false;
  for (const std::string& net : networks)
    if (InNetwork(a, net)) return true;
  return false;
}

Verdict PasswordAllowed(const Config& config, const Link& link) {
  switch (config.cleartext) {
    case CleartextPolicy::kAlways: return {true, ""};
    case CleartextPolicy::kNever:
      return {false, "passwords are not accepted here; use APOP"};
    case CleartextPolicy::kTlsOnly:
      if (link.tls) return {true, ""};
      return {false, "passwords are accepted only over TLS; use STLS or POP3S"};
    case CleartextPolicy::kTlsOrNetworks:
      if (link.tls ||
          AddressInNetworks(link.client_addr, config.trusted_networks))
        return {true, ""};
      return {false,
              "passwords are accepted only over TLS from this network; use "
              "STLS or POP3S"};
  }
  return {false, "policy error"};
}

Verdict ApopAllowed(const Config& config, const Link& link) {
  switch (config.apop) {
    case ApopPolicy::kAllow: return {true, ""};
    case ApopPolicy::kNever: return {false, "APOP is not accepted here"};
    case ApopPolicy::kTlsOnly:
      if (link.tls) return {true, ""};
      return {false, "APOP is accepted only over TLS"};
  }
  return {false, "policy error"};
}

}  // namespace popguard::policy
