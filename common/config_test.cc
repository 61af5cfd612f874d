#include "common/config.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <syslog.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "build_config.h"
#include "common/log.h"

namespace popguard {
namespace {

constexpr char kPath[] = "/etc/popguard/popguard.toml";

Config ParseOk(std::string_view text) {
  auto c = ParseConfig(text, kPath);
  EXPECT_TRUE(c.has_value()) << (c ? "" : c.error().message);
  return c ? *c : Config{};
}

std::string ParseError(std::string_view text) {
  auto c = ParseConfig(text, kPath);
  EXPECT_FALSE(c.has_value()) << "accepted:\n" << text;
  return c ? "" : c.error().message;
}

bool HasWarning(const Config& c, std::string_view needle) {
  for (const auto& w : c.warnings)
    if (w.find(needle) != std::string::npos) return true;
  return false;
}

TEST(ConfigTest, EmptyFileGivesSafeDefaults) {
  Config c = ParseOk("");
  EXPECT_EQ(c.path, kPath);
  EXPECT_EQ(c.listen, (std::vector<std::string>{"0.0.0.0:110", "[::]:110"}));
  EXPECT_TRUE(c.listen_tls.empty());
  EXPECT_EQ(c.hostname, "");
  EXPECT_EQ(c.max_sessions, 200u);
  EXPECT_EQ(c.pam_service, "popguard");
  EXPECT_EQ(c.popauth_file, "/etc/pop.auth");
  EXPECT_EQ(c.popauth_key, "/etc/popguard/pop.auth.key");
  EXPECT_EQ(c.min_uid, 1000u);
  EXPECT_EQ(c.fail_delay_ms, 2000u);
  EXPECT_EQ(c.max_failures, 3u);
  EXPECT_EQ(c.cleartext, CleartextPolicy::kTlsOnly);
  EXPECT_EQ(c.apop, ApopPolicy::kAllow);
  EXPECT_TRUE(c.trusted_networks.empty());
  EXPECT_FALSE(c.apop_users_must_use_apop);
  EXPECT_EQ(c.tls_certificate, "");
  EXPECT_EQ(c.tls_private_key, "");
  EXPECT_EQ(c.tls_min_protocol, "TLSv1.2");
  EXPECT_EQ(c.tls_ciphers, "");
  EXPECT_EQ(c.tls_ciphersuites, "");
  EXPECT_EQ(c.format, MailboxFormatSetting::kMaildir);
  EXPECT_EQ(c.maildir, "~/Maildir");
  EXPECT_EQ(c.mbox, "/var/mail/%u");
  EXPECT_EQ(c.login_timeout_s, 60u);
  EXPECT_EQ(c.idle_timeout_s, 600u);
  EXPECT_EQ(c.max_bad_commands, 10u);
  EXPECT_EQ(c.front_user, "popguard");
  EXPECT_EQ(c.empty_dir, "/var/lib/popguard/empty");
  EXPECT_EQ(c.worker_path, POPGUARD_WORKER_PATH);
  EXPECT_EQ(c.syslog_facility, "mail");
}

TEST(ConfigTest, DefaultsWarnAboutApopWithoutTlsAndNoCertificate) {
  Config c = ParseOk("");
  ASSERT_EQ(c.warnings.size(), 2u);
  EXPECT_TRUE(HasWarning(c, "APOP is allowed without TLS"));
  EXPECT_TRUE(HasWarning(c, "tls.certificate is not set"));
}

constexpr char kEveryKey[] = R"(
[server]
listen = ["127.0.0.1:1110", "[::1]:1110", "192.0.2.7:110"]
listen_tls = ["192.0.2.7:995", "[2001:db8::7]:995"]
hostname = "pop.example.org"
max_sessions = 50

[auth]
pam_service = "pop3"
popauth_file = "/var/lib/pop/pop.auth"
popauth_key = "/var/lib/pop/key"
min_uid = 2000
fail_delay_ms = 500
max_failures = 5
cleartext = "never"
apop = "tls-only"
trusted_networks = []
apop_users_must_use_apop = true

[tls]
certificate = "/etc/popguard/cert.pem"
private_key = "/etc/popguard/key.pem"
min_protocol = "TLSv1.3"
ciphers = "ECDHE+AESGCM:!aNULL"
ciphersuites = "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

[mailbox]
format = "mbox"
maildir = "/srv/mail/%u/Maildir"
mbox = "~/mbox"

[session]
login_timeout = 30
idle_timeout = 1800
max_bad_commands = 4

[privsep]
front_user = "pop-login"
empty_dir = "/run/popguard/empty"
worker_path = "/opt/popguard/libexec/popguard-worker"

[log]
facility = "local3"
)";

TEST(ConfigTest, ParsesEveryKey) {
  Config c = ParseOk(kEveryKey);
  EXPECT_EQ(c.listen, (std::vector<std::string>{"127.0.0.1:1110", "[::1]:1110",
                                                "192.0.2.7:110"}));
  EXPECT_EQ(c.listen_tls,
            (std::vector<std::string>{"192.0.2.7:995", "[2001:db8::7]:995"}));
  EXPECT_EQ(c.hostname, "pop.example.org");
  EXPECT_EQ(c.max_sessions, 50u);
  EXPECT_EQ(c.pam_service, "pop3");
  EXPECT_EQ(c.popauth_file, "/var/lib/pop/pop.auth");
  EXPECT_EQ(c.popauth_key, "/var/lib/pop/key");
  EXPECT_EQ(c.min_uid, 2000u);
  EXPECT_EQ(c.fail_delay_ms, 500u);
  EXPECT_EQ(c.max_failures, 5u);
  EXPECT_EQ(c.cleartext, CleartextPolicy::kNever);
  EXPECT_EQ(c.apop, ApopPolicy::kTlsOnly);
  EXPECT_TRUE(c.apop_users_must_use_apop);
  EXPECT_EQ(c.tls_certificate, "/etc/popguard/cert.pem");
  EXPECT_EQ(c.tls_private_key, "/etc/popguard/key.pem");
  EXPECT_EQ(c.tls_min_protocol, "TLSv1.3");
  EXPECT_EQ(c.tls_ciphers, "ECDHE+AESGCM:!aNULL");
  EXPECT_EQ(c.tls_ciphersuites,
            "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256");
  EXPECT_EQ(c.format, MailboxFormatSetting::kMbox);
  EXPECT_EQ(c.maildir, "/srv/mail/%u/Maildir");
  EXPECT_EQ(c.mbox, "~/mbox");
  EXPECT_EQ(c.login_timeout_s, 30u);
  EXPECT_EQ(c.idle_timeout_s, 1800u);
  EXPECT_EQ(c.max_bad_commands, 4u);
  EXPECT_EQ(c.front_user, "pop-login");
  EXPECT_EQ(c.empty_dir, "/run/popguard/empty");
  EXPECT_EQ(c.worker_path, "/opt/popguard/libexec/popguard-worker");
  EXPECT_EQ(c.syslog_facility, "local3");
  EXPECT_TRUE(c.warnings.empty());
}

TEST(ConfigTest, ParsesEveryEnumValue) {
  EXPECT_EQ(ParseOk("auth.cleartext = \"always\"").cleartext,
            CleartextPolicy::kAlways);
  EXPECT_EQ(ParseOk("auth.cleartext = \"tls-only\"").cleartext,
            CleartextPolicy::kTlsOnly);
  EXPECT_EQ(ParseOk("auth.cleartext = \"tls-or-networks\"").cleartext,
            CleartextPolicy::kTlsOrNetworks);
  EXPECT_EQ(ParseOk("auth.apop = \"allow\"").apop, ApopPolicy::kAllow);
  EXPECT_EQ(ParseOk("auth.apop = \"never\"").apop, ApopPolicy::kNever);
  EXPECT_EQ(ParseOk("mailbox.format = \"maildir\"").format,
            MailboxFormatSetting::kMaildir);
}

TEST(ConfigTest, SyntaxErrorNamesFileAndLine) {
  EXPECT_EQ(ParseError("[server]\nmax_sessions = 5\nhostname = \"x\n")
                .rfind(std::string(kPath) + ":3: ", 0),
            0u);
}

TEST(ConfigTest, UnknownKeyNamesFileLineAndKey) {
  EXPECT_EQ(ParseError("[auth]\nmin_uid = 1000\nfoo = 1\n"),
            std::string(kPath) + ":3: unknown key 'auth.foo'");
}

TEST(ConfigTest, UnknownTableIsAnError) {
  EXPECT_EQ(ParseError("\n[ssl]\ncert = \"/x\"\n"),
            std::string(kPath) + ":2: unknown key 'ssl'");
}

TEST(ConfigTest, TopLevelKeyIsAnError) {
  EXPECT_EQ(ParseError("max_sessions = 5\n"),
            std::string(kPath) + ":1: unknown key 'max_sessions'");
}

TEST(ConfigTest, SectionThatIsNotATableIsAnError) {
  EXPECT_EQ(ParseError("server = 5\n"),
            std::string(kPath) + ":1: key 'server': expected a table");
  EXPECT_NE(ParseError("[[server]]\nmax_sessions = 5\n").find("'server'"),
            std::string::npos);
}

TEST(ConfigTest, WrongTypeNamesFileLineKeyAndExpectation) {
  EXPECT_EQ(ParseError("[session]\n\nidle_timeout = \"600\"\n"),
            std::string(kPath) +
                ":3: key 'session.idle_timeout': expected an integer from 1 "
                "to 86400");
  EXPECT_EQ(ParseError("[server]\nhostname = 5\n"),
            std::string(kPath) +
                ":2: key 'server.hostname': expected a host name of letters, "
                "digits, '.' and '-' (or \"\")");
  EXPECT_EQ(ParseError("[auth]\ncleartext = true\n"),
            std::string(kPath) +
                ":2: key 'auth.cleartext': expected one of \"always\", "
                "\"never\", \"tls-only\", \"tls-or-networks\"");
}

TEST(ConfigTest, RejectsFloatAndBooleanForIntegers) {
  EXPECT_NE(
      ParseError("session.idle_timeout = 600.0").find("'session.idle_timeout'"),
      std::string::npos);
  EXPECT_NE(ParseError("auth.max_failures = true").find("'auth.max_failures'"),
            std::string::npos);
}

struct RangeCase {
  const char* key;
  long long low_bad, low_ok, high_ok, high_bad;
};

TEST(ConfigTest, EnforcesIntegerRanges) {
  const RangeCase cases[] = {
      {"server.max_sessions", 0, 1, 100000, 100001},
      {"auth.min_uid", 0, 1, 4294967294, 4294967295},
      {"auth.fail_delay_ms", -1, 0, 30000, 30001},
      {"auth.max_failures", 0, 1, 100, 101},
      {"session.login_timeout", 0, 1, 3600, 3601},
      {"session.idle_timeout", 0, 1, 86400, 86401},
      {"session.max_bad_commands", 0, 1, 1000, 1001},
      {"server.max_sessions_per_address", -1, 0, 100000, 100001},
      {"auth.max_delay_ms", -1, 0, 60000, 60001},
      {"auth.ban_after_failures", -1, 0, 10000, 10001},
      {"auth.ban_window", 0, 1, 86400, 86401},
      {"auth.ban_time", 0, 1, 604800, 604801},
      {"session.login_delay", -1, 0, 86400, 86401},
  };
  for (const auto& rc : cases) {
    SCOPED_TRACE(rc.key);
    for (long long bad : {rc.low_bad, rc.high_bad}) {
      std::string msg = ParseError(fmt::format("{} = {}", rc.key, bad));
      EXPECT_NE(
          msg.find(fmt::format("key '{}': expected an integer from", rc.key)),
          std::string::npos)
          << msg;
    }
    for (long long ok : {rc.low_ok, rc.high_ok})
      ParseOk(fmt::format("{} = {}", rc.key, ok));
  }
}

TEST(ConfigTest, AcceptsValidListenAddresses) {
  Config c = ParseOk(
      R"(server.listen = ["0.0.0.0:1", "[::]:65535", "[2001:db8::5]:110"])");
  EXPECT_EQ(c.listen.size(), 3u);
}

TEST(ConfigTest, RejectsInvalidListenAddresses) {
  for (const char* bad :
       {"[\"\"]", "[\"0.0.0.0\"]", "[\"0.0.0.0:0\"]", "[\"0.0.0.0:65536\"]",
        "[\"0.0.0.0:+110\"]", "[\"0.0.0.0:11a\"]", "[\"::1:110\"]",
        "[\"[::1:110\"]", "[\"[127.0.0.1]:110\"]", "[\"localhost:110\"]",
        "[\"256.0.0.1:110\"]", "[\"1.2.3.4:\"]",
        "[\"1.2.3.4:110\", \"1.2.3.4:110\"]", "[110]", "\"0.0.0.0:110\""}) {
    SCOPED_TRACE(bad);
    EXPECT_NE(ParseError(fmt::format("[server]\nlisten = {}\n", bad))
                  .find(":2: key 'server.listen': expected an array"),
              std::string::npos);
  }
}

TEST(ConfigTest, RequiresSomewhereToListen) {
  EXPECT_EQ(ParseError("[server]\nlisten = []\n"),
            std::string(kPath) +
                ":2: key 'server.listen': expected at least one address in "
                "server.listen or server.listen_tls");
  Config c = ParseOk(
      "server.listen = []\nserver.listen_tls = [\"[::]:995\"]\n"
      "tls.certificate = \"/c\"\ntls.private_key = \"/k\"\n");
  EXPECT_TRUE(c.listen.empty());
  EXPECT_EQ(c.listen_tls, (std::vector<std::string>{"[::]:995"}));
}

TEST(ConfigTest, ImplicitTlsNeedsCertificateAndKey) {
  EXPECT_EQ(ParseError("\n[server]\nlisten_tls = [\"0.0.0.0:995\"]\n"),
            std::string(kPath) +
                ":3: key 'server.listen_tls': needs tls.certificate and "
                "tls.private_key");
}

TEST(ConfigTest, CertificateAndKeyComeTogether) {
  EXPECT_EQ(ParseError("[tls]\ncertificate = \"/etc/c.pem\"\n"),
            std::string(kPath) +
                ":2: key 'tls.certificate': needs tls.private_key as well");
  EXPECT_EQ(ParseError("[tls]\n\nprivate_key = \"/etc/k.pem\"\n"),
            std::string(kPath) +
                ":3: key 'tls.private_key': needs tls.certificate as well");
}

TEST(ConfigTest, RejectsAddressInBothListenLists) {
  EXPECT_NE(ParseError("[server]\nlisten = [\"0.0.0.0:995\"]\n"
                       "listen_tls = [\"0.0.0.0:995\"]\n"
                       "[tls]\ncertificate = \"/c\"\nprivate_key = \"/k\"\n")
                .find(":3: key 'server.listen_tls': '0.0.0.0:995' is also in "
                      "server.listen"),
            std::string::npos);
}

TEST(ConfigTest, AcceptsTrustedNetworks) {
  Config c = ParseOk(
      "auth.cleartext = \"tls-or-networks\"\n"
      "auth.trusted_networks = [\"192.0.2.0/24\", \"2001:db8::/32\", "
      "\"127.0.0.1\", \"::1\", \"10.0.0.0/8\", \"0.0.0.0/0\", \"::/128\"]");
  EXPECT_EQ(c.trusted_networks.size(), 7u);
  EXPECT_TRUE(HasWarning(c, "clear text from 192.0.2.0/24, 2001:db8::/32"));
}

TEST(ConfigTest, RejectsMalformedTrustedNetworks) {
  for (const char* bad :
       {"10.0.0.0/", "10.0.0.0/+8", "10.0.0.0/-1", "10.0.0.0/33",
        "2001:db8::/129", "10.0.0.0/ 8", "10.0.0.0/8/8", "10.0.0.0/0008",
        "example.org", "10.0.0/8", "", "10.0.0.0/8 "}) {
    SCOPED_TRACE(bad);
    EXPECT_NE(ParseError(fmt::format("auth.trusted_networks = [\"{}\"]", bad))
                  .find(":1: key 'auth.trusted_networks': expected"),
              std::string::npos);
  }
}

TEST(ConfigTest, WarnsAboutTrustedNetworksThatDoNothing) {
  EXPECT_TRUE(HasWarning(ParseOk("auth.trusted_networks = [\"10.0.0.0/8\"]"),
                         "no effect"));
  EXPECT_TRUE(HasWarning(ParseOk("auth.cleartext = \"tls-or-networks\""),
                         "the same as \"tls-only\""));
}

TEST(ConfigTest, ReadsApopUsersMustUseApopAsBoolean) {
  EXPECT_TRUE(
      ParseOk("auth.apop_users_must_use_apop = true").apop_users_must_use_apop);
  EXPECT_NE(ParseError("auth.apop_users_must_use_apop = 1")
                .find("key 'auth.apop_users_must_use_apop': expected true or "
                      "false"),
            std::string::npos);
}

TEST(ConfigTest, ReadsLandlockSetting) {
  EXPECT_EQ(Config().landlock, LandlockSetting::kBestEffort);
  EXPECT_EQ(ParseOk("privsep.landlock = \"required\"").landlock,
            LandlockSetting::kRequired);
  EXPECT_NE(ParseError("privsep.landlock = \"maybe\"")
                .find("key 'privsep.landlock': expected one of"),
            std::string::npos);
}

TEST(ConfigTest, RejectsOldTlsProtocols) {
  for (const char* bad : {"TLSv1", "TLSv1.1", "tlsv1.2", ""}) {
    SCOPED_TRACE(bad);
    EXPECT_NE(ParseError(fmt::format("tls.min_protocol = \"{}\"", bad))
                  .find("key 'tls.min_protocol': expected"),
              std::string::npos);
  }
}

TEST(ConfigTest, RejectsBadStrings) {
  const char* cases[][2] = {
      {"server.hostname", "bad_host"},
      {"server.hostname", "-x.example"},
      {"server.hostname", "a=b"},
      {"auth.pam_service", ""},
      {"auth.pam_service", "../shadow"},
      {"auth.popauth_file", "pop.auth"},
      {"auth.popauth_key", ""},
      {"auth.cleartext", "ALWAYS"},
      {"auth.apop", "tls"},
      {"mailbox.format", "mh"},
      {"mailbox.maildir", "Maildir"},
      {"mailbox.maildir", "~user/Maildir"},
      {"mailbox.mbox", "/var/mail/%n"},
      {"mailbox.mbox", "/var/mail/%"},
      {"privsep.front_user", "-popguard"},
      {"privsep.front_user", "pop guard"},
      {"privsep.empty_dir", "empty"},
      {"privsep.worker_path", "popguard-worker"},
      {"log.facility", "kern"},
      {"tls.certificate", "cert.pem"},
      {"tls.private_key", "key.pem"},
      {"tls.ciphers", "HIGH;rm -rf"},
      {"tls.ciphersuites", "TLS AES"},
  };
  for (const auto& [key, value] : cases) {
    SCOPED_TRACE(fmt::format("{} = {}", key, value));
    EXPECT_NE(ParseError(fmt::format("{} = \"{}\"", key, value))
                  .find(fmt::format(":1: key '{}': expected", key)),
              std::string::npos);
  }
}

TEST(ConfigTest, RejectsNulInAPath) {
  EXPECT_NE(ParseError("auth.popauth_file = \"/etc/pop\\u0000.auth\"")
                .find("'auth.popauth_file'"),
            std::string::npos);
}

TEST(ConfigTest, WarnsAboutClearTextOnEveryLink) {
  Config c = ParseOk("auth.cleartext = \"always\"\nauth.apop = \"never\"");
  ASSERT_EQ(c.warnings.size(), 1u);
  EXPECT_TRUE(HasWarning(c, "clear text on any link"));
}

TEST(ConfigTest, WarnsAboutApopWithoutTls) {
  EXPECT_TRUE(
      HasWarning(ParseOk("auth.apop = \"allow\""), "can be attacked offline"));
  EXPECT_FALSE(HasWarning(ParseOk("auth.apop = \"tls-only\""), "APOP"));
  EXPECT_FALSE(HasWarning(ParseOk("auth.apop = \"never\""), "APOP"));
}

TEST(ConfigTest, WarnsAboutShortIdleTimeout) {
  EXPECT_TRUE(HasWarning(ParseOk("session.idle_timeout = 599"), "RFC 1939"));
  EXPECT_FALSE(HasWarning(ParseOk("session.idle_timeout = 600"), "RFC 1939"));
}

TEST(ConfigTest, WarnsAboutLowMinUid) {
  EXPECT_TRUE(HasWarning(ParseOk("auth.min_uid = 999"), "auth.min_uid"));
  EXPECT_FALSE(HasWarning(ParseOk("auth.min_uid = 1000"), "auth.min_uid"));
}

TEST(ConfigTest, WarnsAboutNoFailDelay) {
  EXPECT_TRUE(
      HasWarning(ParseOk("auth.fail_delay_ms = 0"), "auth.fail_delay_ms"));
}

void ExpectSameSettings(const Config& a, const Config& b) {
  EXPECT_EQ(a.listen, b.listen);
  EXPECT_EQ(a.listen_tls, b.listen_tls);
  EXPECT_EQ(a.trusted_networks, b.trusted_networks);
  EXPECT_EQ(a.apop_users_must_use_apop, b.apop_users_must_use_apop);
  EXPECT_EQ(a.tls_certificate, b.tls_certificate);
  EXPECT_EQ(a.tls_private_key, b.tls_private_key);
  EXPECT_EQ(a.tls_min_protocol, b.tls_min_protocol);
  EXPECT_EQ(a.tls_ciphers, b.tls_ciphers);
  EXPECT_EQ(a.tls_ciphersuites, b.tls_ciphersuites);
  EXPECT_EQ(a.hostname, b.hostname);
  EXPECT_EQ(a.max_sessions, b.max_sessions);
  EXPECT_EQ(a.pam_service, b.pam_service);
  EXPECT_EQ(a.popauth_file, b.popauth_file);
  EXPECT_EQ(a.popauth_key, b.popauth_key);
  EXPECT_EQ(a.min_uid, b.min_uid);
  EXPECT_EQ(a.fail_delay_ms, b.fail_delay_ms);
  EXPECT_EQ(a.max_failures, b.max_failures);
  EXPECT_EQ(a.cleartext, b.cleartext);
  EXPECT_EQ(a.apop, b.apop);
  EXPECT_EQ(a.format, b.format);
  EXPECT_EQ(a.maildir, b.maildir);
  EXPECT_EQ(a.mbox, b.mbox);
  EXPECT_EQ(a.login_timeout_s, b.login_timeout_s);
  EXPECT_EQ(a.idle_timeout_s, b.idle_timeout_s);
  EXPECT_EQ(a.max_bad_commands, b.max_bad_commands);
  EXPECT_EQ(a.front_user, b.front_user);
  EXPECT_EQ(a.empty_dir, b.empty_dir);
  EXPECT_EQ(a.worker_path, b.worker_path);
  EXPECT_EQ(a.syslog_facility, b.syslog_facility);
  EXPECT_EQ(a.max_sessions_per_address, b.max_sessions_per_address);
  EXPECT_EQ(a.proxy_listen, b.proxy_listen);
  EXPECT_EQ(a.proxy_listen_tls, b.proxy_listen_tls);
  EXPECT_EQ(a.proxy_trusted, b.proxy_trusted);
  EXPECT_EQ(a.proxy_trust_tls, b.proxy_trust_tls);
  EXPECT_EQ(a.max_delay_ms, b.max_delay_ms);
  EXPECT_EQ(a.ban_after_failures, b.ban_after_failures);
  EXPECT_EQ(a.ban_window_s, b.ban_window_s);
  EXPECT_EQ(a.ban_time_s, b.ban_time_s);
  EXPECT_EQ(a.penalty_file, b.penalty_file);
  EXPECT_EQ(a.login_delay_s, b.login_delay_s);
  EXPECT_EQ(a.expire, b.expire);
  EXPECT_EQ(a.warnings, b.warnings);
}

TEST(ConfigTest, DescribeConfigRoundTripsDefaults) {
  Config c = ParseOk("");
  Config again = ParseOk(DescribeConfig(c));
  ExpectSameSettings(c, again);
}

TEST(ConfigTest, DescribeConfigRoundTripsEveryKey) {
  Config c = ParseOk(kEveryKey);
  std::string text = DescribeConfig(c);
  Config again = ParseOk(text);
  ExpectSameSettings(c, again);
  // Every key is shown, even those left at their default.
  for (const char* key : {"listen",           "listen_tls",
                          "hostname",         "max_sessions",
                          "pam_service",      "popauth_file",
                          "popauth_key",      "min_uid",
                          "fail_delay_ms",    "max_failures",
                          "cleartext",        "apop",
                          "trusted_networks", "apop_users_must_use_apop",
                          "certificate",      "private_key",
                          "min_protocol",     "ciphers",
                          "ciphersuites",     "format",
                          "maildir",          "mbox",
                          "login_timeout",    "idle_timeout",
                          "max_bad_commands", "front_user",
                          "empty_dir",        "worker_path",
                          "facility"})
    EXPECT_NE(text.find(fmt::format("\n{} = ", key)), std::string::npos) << key;
}

TEST(ConfigTest, DescribeConfigRoundTripsNetworks) {
  Config c = ParseOk(
      "auth.cleartext = \"tls-or-networks\"\n"
      "auth.trusted_networks = [\"192.0.2.0/24\", \"::1\"]\n");
  ExpectSameSettings(c, ParseOk(DescribeConfig(c)));
}

TEST(ConfigTest, DescribeConfigQuotesAwkwardStrings) {
  Config c;
  c.popauth_file = "/etc/\"odd\" \\ name\t";
  c.worker_path.clear();
  Config again = ParseOk(DescribeConfig(c));
  EXPECT_EQ(again.popauth_file, c.popauth_file);
  EXPECT_EQ(again.worker_path, POPGUARD_WORKER_PATH);
}

TEST(ConfigTest, LoadConfigReadsAFile) {
  char name[] = "/tmp/popguard-config-test-XXXXXX";
  int fd = mkstemp(name);
  ASSERT_GE(fd, 0);
  std::string text = "[session]\nidle_timeout = 900\nbogus = 1\n";
  ASSERT_EQ(write(fd, text.data(), text.size()),
            static_cast<ssize_t>(text.size()));
  close(fd);
  auto c = LoadConfig(name);
  unlink(name);
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error().message,
            std::string(name) + ":3: unknown key 'session.bogus'");
}

TEST(ConfigTest, LoadConfigFailsOnMissingFile) {
  auto c = LoadConfig("/nonexistent/popguard.toml");
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error().message.rfind("/nonexistent/popguard.toml: ", 0), 0u);
}

TEST(ExpandMailboxPathTest, ExpandsHome) {
  EXPECT_EQ(ExpandMailboxPath("~/Maildir", "alice", "/home/alice").value(),
            "/home/alice/Maildir");
  EXPECT_EQ(ExpandMailboxPath("~", "alice", "/home/alice").value(),
            "/home/alice");
}

TEST(ExpandMailboxPathTest, ExpandsUserAndPercent) {
  EXPECT_EQ(ExpandMailboxPath("/var/mail/%u", "bob", "/home/bob").value(),
            "/var/mail/bob");
  EXPECT_EQ(ExpandMailboxPath("/srv/%u/%%u/%u", "bob", "/h").value(),
            "/srv/bob/%u/bob");
}

TEST(ExpandMailboxPathTest, TildeOnlyCountsAtTheStart) {
  EXPECT_EQ(ExpandMailboxPath("/x/~/y", "bob", "/home/bob").value(), "/x/~/y");
}

TEST(ExpandMailboxPathTest, RejectsRelativeResult) {
  EXPECT_FALSE(ExpandMailboxPath("Maildir", "bob", "/home/bob").has_value());
  EXPECT_FALSE(ExpandMailboxPath("~/Maildir", "bob", "").has_value());
  EXPECT_FALSE(ExpandMailboxPath("~/Maildir", "bob", "home").has_value());
  EXPECT_FALSE(ExpandMailboxPath("~bob/Maildir", "bob", "/h").has_value());
  EXPECT_FALSE(ExpandMailboxPath("%u/mbox", "bob", "/h").has_value());
}

TEST(ExpandMailboxPathTest, RejectsDangerousUserNames) {
  const std::string users[] = {
      "", "a/b", "/etc", ".", "..", ".hidden", std::string("a\0b", 3)};
  for (const auto& user : users) {
    SCOPED_TRACE(user);
    auto r = ExpandMailboxPath("/var/mail/%u", user, "/home/x");
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().message.find("user name"), std::string::npos);
  }
}

TEST(ExpandMailboxPathTest, RejectsUnknownEscapes) {
  EXPECT_FALSE(ExpandMailboxPath("/var/mail/%n", "bob", "/h").has_value());
  EXPECT_FALSE(ExpandMailboxPath("/var/mail/%", "bob", "/h").has_value());
}

// log.h's helpers, tested here because the configuration relies on them
// (facility names, sanitised names in error messages).
TEST(SanitizeTest, KeepsPrintableAscii) {
  EXPECT_EQ(Sanitize("alice@example.org"), "alice@example.org");
  EXPECT_EQ(Sanitize(""), "");
}

TEST(SanitizeTest, EscapesQuoteBackslashControlAndHighBytes) {
  EXPECT_EQ(Sanitize(std::string_view("a\"b\\c\n\0\x7f\xff", 9)),
            "a\\x22b\\x5cc\\x0a\\x00\\x7f\\xff");
}

TEST(SanitizeTest, CutsLongInputAndMarksIt) {
  EXPECT_EQ(Sanitize(std::string(100, 'a')), std::string(64, 'a') + "...");
  EXPECT_EQ(Sanitize(std::string(64, 'a')), std::string(64, 'a'));
  EXPECT_EQ(Sanitize("abcdef", 3), "abc...");
}

TEST(SanitizeTest, NeverCutsInsideAnEscape) {
  EXPECT_EQ(Sanitize("ab\n", 4), "ab...");
  EXPECT_EQ(Sanitize("ab\n", 6), "ab\\x0a");
  EXPECT_EQ(Sanitize(std::string(100, '\n')).size(), 64u + 3);
}

TEST(FacilityFromNameTest, MapsKnownNames) {
  EXPECT_EQ(FacilityFromName("mail"), LOG_MAIL);
  EXPECT_EQ(FacilityFromName("daemon"), LOG_DAEMON);
  EXPECT_EQ(FacilityFromName("auth"), LOG_AUTH);
  EXPECT_EQ(FacilityFromName("authpriv"), LOG_AUTHPRIV);
  EXPECT_EQ(FacilityFromName("local0"), LOG_LOCAL0);
  EXPECT_EQ(FacilityFromName("local7"), LOG_LOCAL7);
}

TEST(FacilityFromNameTest, RejectsUnknownNames) {
  for (const char* bad : {"", "MAIL", "kern", "local8", "mail "})
    EXPECT_EQ(FacilityFromName(bad), -1) << bad;
}

// "2024-05-01T12:34:56.789Z ": digits where digits belong.
bool StartsWithUtcTime(std::string_view line) {
  constexpr std::string_view kShape = "dddd-dd-ddTdd:dd:dd.dddZ ";
  if (line.size() < kShape.size()) return false;
  for (std::size_t i = 0; i < kShape.size(); i++) {
    bool digit = line[i] >= '0' && line[i] <= '9';
    if (kShape[i] == 'd' ? !digit : line[i] != kShape[i]) return false;
  }
  return true;
}

TEST(LogTest, StderrLineCarriesUtcTimeIdentAndPid) {
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  int saved = dup(STDERR_FILENO);
  ASSERT_GE(saved, 0);
  ASSERT_GE(dup2(pipe_fds[1], STDERR_FILENO), 0);
  close(pipe_fds[1]);

  InitLog("popguard-test", true, LOG_MAIL, false);
  Log(LogLevel::kDebug, "hidden {}", 1);
  Log(LogLevel::kWarning, "shown {}", 2);
  InitLog("popguard-test", true, LOG_MAIL, true);
  Log(LogLevel::kDebug, "debug {}", 3);

  dup2(saved, STDERR_FILENO);
  close(saved);
  char buf[4096];
  ssize_t n = read(pipe_fds[0], buf, sizeof buf);
  close(pipe_fds[0]);
  ASSERT_GT(n, 0);
  std::string out(buf, static_cast<std::size_t>(n));

  std::string tail = "popguard-test[" + std::to_string(getpid()) + "]: ";
  std::vector<std::string> lines;
  for (std::size_t lf; (lf = out.find('\n')) != std::string::npos;) {
    lines.push_back(out.substr(0, lf));
    out.erase(0, lf + 1);
  }
  EXPECT_EQ(out, "");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_TRUE(StartsWithUtcTime(lines[0])) << lines[0];
  EXPECT_EQ(lines[0].substr(25), tail + "warning: shown 2");
  EXPECT_TRUE(StartsWithUtcTime(lines[1])) << lines[1];
  EXPECT_EQ(lines[1].substr(25), tail + "debug: debug 3");
}

// --- Abuse limits, LOGIN-DELAY and EXPIRE, the PROXY protocol. ---

constexpr char kAbuseKeys[] = R"(
[server]
listen = ["127.0.0.1:110"]
max_sessions_per_address = 4
proxy_listen = ["127.0.0.1:10110"]
proxy_listen_tls = ["127.0.0.1:10995"]
proxy_trusted = ["192.0.2.10", "2001:db8::/64"]
proxy_trust_tls = true

[auth]
max_delay_ms = 8000
ban_after_failures = 6
ban_window = 300
ban_time = 1200
penalty_file = "/var/lib/popguard/penalties"

[session]
login_delay = 900
expire = 30

[tls]
certificate = "/c"
private_key = "/k"
)";

TEST(ConfigTest, AbuseLimitsDefaultToBanningAfterTenFailures) {
  Config c = ParseOk("");
  EXPECT_EQ(c.max_sessions_per_address, 10u);
  EXPECT_EQ(c.max_delay_ms, 15000u);
  EXPECT_EQ(c.ban_after_failures, 10u);
  EXPECT_EQ(c.ban_window_s, 600u);
  EXPECT_EQ(c.ban_time_s, 900u);
  EXPECT_EQ(c.penalty_file, "/run/popguard/penalties");
  EXPECT_EQ(c.login_delay_s, 0u);
  EXPECT_EQ(c.expire, "");
  EXPECT_TRUE(c.proxy_listen.empty());
  EXPECT_TRUE(c.proxy_listen_tls.empty());
  EXPECT_TRUE(c.proxy_trusted.empty());
  EXPECT_FALSE(c.proxy_trust_tls);
}

TEST(ConfigTest, ParsesAbuseAndProxyKeys) {
  Config c = ParseOk(kAbuseKeys);
  EXPECT_EQ(c.max_sessions_per_address, 4u);
  EXPECT_EQ(c.proxy_listen, (std::vector<std::string>{"127.0.0.1:10110"}));
  EXPECT_EQ(c.proxy_listen_tls, (std::vector<std::string>{"127.0.0.1:10995"}));
  EXPECT_EQ(c.proxy_trusted,
            (std::vector<std::string>{"192.0.2.10", "2001:db8::/64"}));
  EXPECT_TRUE(c.proxy_trust_tls);
  EXPECT_EQ(c.max_delay_ms, 8000u);
  EXPECT_EQ(c.ban_after_failures, 6u);
  EXPECT_EQ(c.ban_window_s, 300u);
  EXPECT_EQ(c.ban_time_s, 1200u);
  EXPECT_EQ(c.penalty_file, "/var/lib/popguard/penalties");
  EXPECT_EQ(c.login_delay_s, 900u);
  EXPECT_EQ(c.expire, "30");
}

TEST(ConfigTest, ReadsExpireAsNeverOrDays) {
  EXPECT_EQ(ParseOk("session.expire = \"never\"").expire, "NEVER");
  EXPECT_EQ(ParseOk("session.expire = \"NEVER\"").expire, "NEVER");
  EXPECT_EQ(ParseOk("session.expire = 0").expire, "0");
  EXPECT_EQ(ParseOk("session.expire = 36500").expire, "36500");
  for (const char* bad :
       {"\"sometimes\"", "\"30\"", "-1", "36501", "1.5", "true", "\"Never\""}) {
    SCOPED_TRACE(bad);
    EXPECT_NE(ParseError(fmt::format("session.expire = {}", bad))
                  .find("key 'session.expire': expected \"never\" or a "
                        "number of days"),
              std::string::npos);
  }
}

TEST(ConfigTest, ProxyListenNeedsTrustedBalancers) {
  EXPECT_EQ(ParseError("[server]\nproxy_listen = [\"127.0.0.1:10110\"]\n"),
            std::string(kPath) +
                ":2: key 'server.proxy_listen': needs server.proxy_trusted: "
                "the addresses of the balancers");
}

TEST(ConfigTest, ProxyListenTlsNeedsCertificate) {
  EXPECT_NE(ParseError("[server]\nproxy_listen_tls = [\"127.0.0.1:10995\"]\n"
                       "proxy_trusted = [\"127.0.0.1\"]\n")
                .find("key 'server.proxy_listen_tls': needs tls.certificate"),
            std::string::npos);
}

TEST(ConfigTest, ProxyListenersAloneAreSomewhereToListen) {
  Config c = ParseOk(
      "server.listen = []\n"
      "server.proxy_listen = [\"127.0.0.1:10110\"]\n"
      "server.proxy_trusted = [\"127.0.0.1/32\"]\n");
  EXPECT_TRUE(c.listen.empty());
  EXPECT_EQ(c.proxy_listen.size(), 1u);
}

TEST(ConfigTest, RejectsAddressInListenAndProxyListen) {
  EXPECT_NE(ParseError("[server]\nlisten = [\"127.0.0.1:110\"]\n"
                       "proxy_listen = [\"127.0.0.1:110\"]\n"
                       "proxy_trusted = [\"127.0.0.1\"]\n")
                .find(":3: key 'server.proxy_listen': '127.0.0.1:110' is "
                      "also in server.listen"),
            std::string::npos);
}

TEST(ConfigTest, RejectsMalformedProxyTrusted) {
  for (const char* bad :
       {"\"10.0.0.0/\"", "\"10.0.0.0/33\"", "\"host\"", "\"::1/129\""}) {
    SCOPED_TRACE(bad);
    EXPECT_NE(ParseError(fmt::format("server.proxy_trusted = [{}]", bad))
                  .find("key 'server.proxy_trusted': expected an array"),
              std::string::npos);
  }
}

TEST(ConfigTest, RejectsRelativePenaltyFile) {
  EXPECT_NE(ParseError("auth.penalty_file = \"run/penalties\"")
                .find("key 'auth.penalty_file': expected an absolute path"),
            std::string::npos);
}

TEST(ConfigTest, WarnsAboutTrustingTlsFromTheBalancer) {
  EXPECT_TRUE(HasWarning(ParseOk(kAbuseKeys), "server.proxy_trust_tls"));
  EXPECT_FALSE(HasWarning(ParseOk(""), "server.proxy_trust_tls"));
}

TEST(ConfigTest, WarnsAboutProxyTrustedWithoutProxyListener) {
  EXPECT_TRUE(HasWarning(ParseOk("server.proxy_trusted = [\"127.0.0.1\"]"),
                         "server.proxy_trusted has no effect"));
}

TEST(ConfigTest, WarnsAboutNeverBanning) {
  EXPECT_TRUE(HasWarning(ParseOk("auth.ban_after_failures = 0"),
                         "auth.ban_after_failures = 0"));
}

TEST(ConfigTest, DescribeConfigRoundTripsAbuseKeys) {
  Config c = ParseOk(kAbuseKeys);
  std::string text = DescribeConfig(c);
  ExpectSameSettings(c, ParseOk(text));
  for (const char* key :
       {"max_sessions_per_address", "proxy_listen", "proxy_listen_tls",
        "proxy_trusted", "proxy_trust_tls", "max_delay_ms",
        "ban_after_failures", "ban_window", "ban_time", "penalty_file",
        "login_delay", "expire"})
    EXPECT_NE(text.find(fmt::format("\n{} = ", key)), std::string::npos) << key;
  Config never = ParseOk("session.expire = \"never\"");
  ExpectSameSettings(never, ParseOk(DescribeConfig(never)));
}

TEST(ConfigTest, DescribeConfigLeavesUnsetExpireUnset) {
  Config c = ParseOk("");
  EXPECT_EQ(ParseOk(DescribeConfig(c)).expire, "");
}

TEST(ConfigTest, AuditDefaultsToLinuxAuditAndNoJsonFile) {
  Config c = ParseOk("");
  EXPECT_TRUE(c.audit_linux);
  EXPECT_EQ(c.audit_json_file, "");
}

TEST(ConfigTest, AcceptsAuditKeys) {
  Config c = ParseOk(
      "[audit]\n"
      "linux_audit = false\n"
      "json_file = \"/var/log/popguard/audit.jsonl\"\n");
  EXPECT_FALSE(c.audit_linux);
  EXPECT_EQ(c.audit_json_file, "/var/log/popguard/audit.jsonl");
}

TEST(ConfigTest, RejectsRelativeAuditJsonFile) {
  EXPECT_NE(
      ParseError("audit.json_file = \"audit.jsonl\"").find("audit.json_file"),
      std::string::npos);
}

TEST(ConfigTest, RejectsNonBooleanLinuxAudit) {
  EXPECT_NE(ParseError("audit.linux_audit = \"yes\"").find("true or false"),
            std::string::npos);
}

TEST(ConfigTest, DescribeConfigRoundTripsAuditKeys) {
  Config c = ParseOk(
      "audit.linux_audit = false\n"
      "audit.json_file = \"/var/log/popguard/audit.jsonl\"\n");
  std::string text = DescribeConfig(c);
  EXPECT_NE(text.find("\n[audit]\nlinux_audit = false\n"), std::string::npos);
  Config again = ParseOk(text);
  EXPECT_EQ(again.audit_linux, c.audit_linux);
  EXPECT_EQ(again.audit_json_file, c.audit_json_file);
}

}  // namespace
}  // namespace popguard
