#include "policy/auth_policy.h"

#include <gtest/gtest.h>

namespace popguard::policy {
namespace {

Link Plain(const char* addr = "192.0.2.7") { return {false, addr}; }
Link Tls(const char* addr = "192.0.2.7") { return {true, addr}; }

TEST(PasswordAllowed, TlsOnlyRefusesPlainLinksIncludingLoopback) {
  Config c;
  c.cleartext = CleartextPolicy::kTlsOnly;
  EXPECT_FALSE(PasswordAllowed(c, Plain()).allowed);
  EXPECT_FALSE(PasswordAllowed(c, Plain("127.0.0.1")).allowed);
  EXPECT_FALSE(PasswordAllowed(c, Plain("::1")).allowed);
  EXPECT_TRUE(PasswordAllowed(c, Tls()).allowed);
  EXPECT_NE(PasswordAllowed(c, Plain()).reason.find("TLS"), std::string::npos);
}

TEST(PasswordAllowed, NeverRefusesEvenOverTls) {
  Config c;
  c.cleartext = CleartextPolicy::kNever;
  EXPECT_FALSE(PasswordAllowed(c, Tls()).allowed);
}

TEST(PasswordAllowed, AlwaysAllowsPlainLinks) {
  Config c;
  c.cleartext = CleartextPolicy::kAlways;
  EXPECT_TRUE(PasswordAllowed(c, Plain()).allowed);
}

TEST(PasswordAllowed, TlsOrNetworksAllowsListedNetworksOnly) {
  Config c;
  c.cleartext = CleartextPolicy::kTlsOrNetworks;
  c.trusted_networks = {"10.1.0.0/16", "2001:db8::/32"};
  EXPECT_TRUE(PasswordAllowed(c, Plain("10.1.200.3")).allowed);
  EXPECT_TRUE(PasswordAllowed(c, Plain("2001:db8::5")).allowed);
  EXPECT_FALSE(PasswordAllowed(c, Plain("10.2.0.1")).allowed);
  EXPECT_FALSE(PasswordAllowed(c, Plain("127.0.0.1")).allowed);
  EXPECT_TRUE(PasswordAllowed(c, Tls("203.0.113.9")).allowed);
}

TEST(ApopAllowed, FollowsItsOwnSetting) {
  Config c;
  c.apop = ApopPolicy::kTlsOnly;
  EXPECT_FALSE(ApopAllowed(c, Plain()).allowed);
  EXPECT_TRUE(ApopAllowed(c, Tls()).allowed);
  c.apop = ApopPolicy::kNever;
  EXPECT_FALSE(ApopAllowed(c, Tls()).allowed);
  c.apop = ApopPolicy::kAllow;
  EXPECT_TRUE(ApopAllowed(c, Plain()).allowed);
}

TEST(AddressInNetworks, MatchesPrefixesAndSingleAddresses) {
  EXPECT_TRUE(AddressInNetworks("127.0.0.1", {"127.0.0.0/8"}));
  EXPECT_TRUE(AddressInNetworks("127.0.0.1", {"127.0.0.1"}));
  EXPECT_FALSE(AddressInNetworks("127.0.0.2", {"127.0.0.1"}));
  EXPECT_TRUE(AddressInNetworks("::1", {"::1/128"}));
  EXPECT_TRUE(AddressInNetworks("::ffff:10.0.0.1", {"10.0.0.0/8"}));
  EXPECT_TRUE(AddressInNetworks("192.0.2.1", {"0.0.0.0/0"}));
  EXPECT_FALSE(AddressInNetworks("192.0.2.1", {}));
}

TEST(AddressInNetworks, IgnoresMalformedEntriesAndAddresses) {
  EXPECT_FALSE(AddressInNetworks("192.0.2.1", {"192.0.2.0/33"}));
  EXPECT_FALSE(AddressInNetworks("192.0.2.1", {"192.0.2.0/x"}));
  EXPECT_FALSE(AddressInNetworks("192.0.2.1", {"192.0.2.0/"}));
  EXPECT_FALSE(AddressInNetworks("192.0.2.1", {"192.0.2.0/+8"}));
  EXPECT_FALSE(AddressInNetworks("unknown", {"0.0.0.0/0"}));
}

}  // namespace
}  // namespace popguard::policy
