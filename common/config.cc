#include "common/config.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <toml++/toml.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string_view>

#include "build_config.h"
#include "common/log.h"

namespace popguard {
namespace {

// A bound on every path and template: PATH_MAX, so that nothing the
// configuration names can fail later only because it is too long.
constexpr std::size_t kMaxPath = 4095;

// What a key's handler reports when the value is unacceptable: the words
// after "expected", so that every message reads the same way.
using Expectation = std::string;
using Handler =
    std::function<std::optional<Expectation>(const toml::node&, Config&)>;

struct KeySpec {
  std::string_view section;
  std::string_view key;
  Handler handle;
};

std::optional<Expectation> ReadInt(const toml::node& n, std::uint32_t* out,
                                   std::int64_t min, std::int64_t max) {
  auto expect = fmt::format("an integer from {} to {}", min, max);
  const auto* v = n.as_integer();
  if (!v || v->get() < min || v->get() > max) return expect;
  *out = static_cast<std::uint32_t>(v->get());
  return std::nullopt;
}

// Strings are checked byte by byte against `ok`, so that what reaches a
// system call or a log line is exactly what the admin meant.
std::optional<Expectation> ReadString(const toml::node& n, std::string* out,
                                      std::size_t min_len, std::size_t max_len,
                                      const std::function<bool(char)>& ok,
                                      std::string_view what) {
  const auto* v = n.as_string();
  if (!v) return std::string(what);
  const std::string& s = v->get();
  if (s.size() < min_len || s.size() > max_len) return std::string(what);
  for (char ch : s)
    if (!ok(ch)) return std::string(what);
  *out = s;
  return std::nullopt;
}

bool PathChar(char ch) { return ch != '\0' && ch != '\n' && ch != '\r'; }

bool NameChar(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
         (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
}

// Letters, digits, '.' and '-': the APOP challenge is built from the
// host name, and clients refuse a challenge holding anything else.
bool HostChar(char ch) { return NameChar(ch) && ch != '_'; }

std::optional<Expectation> ReadAbsolutePath(const toml::node& n,
                                            std::string* out) {
  std::string s;
  auto err = ReadString(n, &s, 1, kMaxPath, PathChar,
                        "an absolute path (starting with '/')");
  if (err) return err;
  if (s.front() != '/') return "an absolute path (starting with '/')";
  *out = std::move(s);
  return std::nullopt;
}

// A mailbox template starts with '/' or "~/" and uses no escape but %u and
// %%; checking here means a typo stops the daemon at start rather than
// failing every login later.
bool ValidTemplate(std::string_view t) {
  if (!(t.starts_with('/') || t.starts_with("~/"))) return false;
  for (std::size_t i = 0; i < t.size(); i++) {
    if (t[i] != '%') continue;
    if (i + 1 == t.size() || (t[i + 1] != 'u' && t[i + 1] != '%')) return false;
    i++;
  }
  return true;
}

std::optional<Expectation> ReadTemplate(const toml::node& n, std::string* out) {
  constexpr std::string_view kWhat =
      "a path starting with '/' or '~/' (escapes: %u, %%)";
  std::string s;
  if (ReadString(n, &s, 1, kMaxPath, PathChar, kWhat) || !ValidTemplate(s))
    return std::string(kWhat);
  *out = std::move(s);
  return std::nullopt;
}

// "ADDRESS:PORT" with a numeric address: the listener binds before it has
// a resolver it would trust, and a name that resolves differently from one
// start to the next is not what an admin wants to listen on.
bool ValidListen(std::string_view s) {
  auto colon = s.rfind(':');
  if (colon == std::string_view::npos) return false;
  std::string host(s.substr(0, colon));
  std::string_view port = s.substr(colon + 1);

  unsigned value = 0;
  auto [end, ec] =
      std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || port.front() == '+' || ec != std::errc() ||
      end != port.data() + port.size() || value < 1 || value > 65535)
    return false;

  unsigned char addr[16];
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
    return inet_pton(AF_INET6, host.c_str(), addr) == 1;
  }
  return inet_pton(AF_INET, host.c_str(), addr) == 1;
}

// An array of at most `max` distinct strings, each accepted by `valid`.
std::optional<Expectation> ReadStringList(
    const toml::node& n, std::vector<std::string>* out, std::size_t max,
    const std::function<bool(std::string_view)>& valid, std::string_view what) {
  const auto* a = n.as_array();
  if (!a || a->size() > max) return std::string(what);
  std::vector<std::string> list;
  for (const auto& e : *a) {
    const auto* s = e.as_string();
    if (!s || !valid(s->get())) return std::string(what);
    for (const auto& seen : list)
      if (seen == s->get()) return std::string(what);
    list.push_back(s->get());
  }
  *out = std::move(list);
  return std::nullopt;
}

std::optional<Expectation> ReadListen(const toml::node& n,
                                      std::vector<std::string>* out) {
  return ReadStringList(n, out, 32, ValidListen,
                        "an array of at most 32 distinct \"ADDRESS:PORT\" "
                        "strings (IPv4 address, or IPv6 address in "
                        "brackets)");
}

// "ADDRESS" or "ADDRESS/PREFIX", numeric.  Stricter than strtoul: "10.0.0.0/"
// or "10.0.0.0/+8" would otherwise read as a prefix of 0 or 8, and a
// prefix of 0 trusts the whole Internet.
bool ValidNetwork(std::string_view s) {
  auto slash = s.find('/');
  std::string addr(s.substr(0, slash));
  unsigned char bytes[16];
  bool v4 = inet_pton(AF_INET, addr.c_str(), bytes) == 1;
  if (!v4 && inet_pton(AF_INET6, addr.c_str(), bytes) != 1) return false;
  if (slash == std::string_view::npos) return true;

  std::string_view prefix = s.substr(slash + 1);
  unsigned bits = 0;
  auto [end, ec] =
      std::from_chars(prefix.data(), prefix.data() + prefix.size(), bits);
  return !prefix.empty() && prefix.size() <= 3 && prefix.front() != '+' &&
         ec == std::errc() && end == prefix.data() + prefix.size() &&
         bits <= (v4 ? 32u : 128u);
}

// OpenSSL cipher strings ("ECDHE+AESGCM:!aNULL", "TLS_AES_256_GCM_SHA384").
// Only the characters are checked here: the TLS code, which links OpenSSL,
// rejects a list naming no cipher when it loads it at start.
bool CipherChar(char ch) {
  return NameChar(ch) || ch == ':' || ch == '+' || ch == '!' || ch == '@' ||
         ch == '=' || ch == ',';
}

std::optional<Expectation> ReadOptionalPath(const toml::node& n,
                                            std::string* out) {
  constexpr std::string_view kWhat = "an absolute path, or \"\" for none";
  std::string s;
  if (ReadString(n, &s, 0, kMaxPath, PathChar, kWhat) ||
      (!s.empty() && s.front() != '/'))
    return std::string(kWhat);
  *out = std::move(s);
  return std::nullopt;
}

std::optional<Expectation> ReadBool(const toml::node& n, bool* out) {
  const auto* v = n.as_boolean();
  if (!v) return "true or false";
  *out = v->get();
  return std::nullopt;
}

std::optional<Expectation> ReadNetworks(const toml::node& n,
                                        std::vector<std::string>* out) {
  return ReadStringList(n, out, 256, ValidNetwork,
                        "an array of at most 256 distinct networks "
                        "(\"192.0.2.0/24\", \"2001:db8::/32\", "
                        "\"127.0.0.1\")");
}

// RFC 2449 EXPIRE: "NEVER" or a number of days (0: retrieved mail is removed
// at QUIT; the worker enforces it).  Kept as the text CAPA shows.
std::optional<Expectation> ReadExpire(const toml::node& n, Config& c) {
  constexpr std::string_view kWhat =
      "\"never\" or a number of days from 0 to 36500";
  if (const auto* days = n.as_integer()) {
    if (days->get() < 0 || days->get() > 36500) return std::string(kWhat);
    c.expire = fmt::to_string(days->get());
    return std::nullopt;
  }
  const auto* v = n.as_string();
  if (!v || (v->get() != "never" && v->get() != "NEVER"))
    return std::string(kWhat);
  c.expire = "NEVER";
  return std::nullopt;
}

template <typename E>
struct EnumName {
  E value;
  std::string_view name;
};

constexpr EnumName<CleartextPolicy> kCleartextNames[] = {
    {CleartextPolicy::kAlways, "always"},
    {CleartextPolicy::kNever, "never"},
    {CleartextPolicy::kTlsOnly, "tls-only"},
    {CleartextPolicy::kTlsOrNetworks, "tls-or-networks"},
};

constexpr EnumName<ApopPolicy> kApopNames[] = {
    {ApopPolicy::kAllow, "allow"},
    {ApopPolicy::kTlsOnly, "tls-only"},
    {ApopPolicy::kNever, "never"},
};

constexpr EnumName<MailboxFormatSetting> kFormatNames[] = {
    {MailboxFormatSetting::kMaildir, "maildir"},
    {MailboxFormatSetting::kMbox, "mbox"},
};

constexpr EnumName<LandlockSetting> kLandlockNames[] = {
    {LandlockSetting::kBestEffort, "best-effort"},
    {LandlockSetting::kRequired, "required"},
};

template <typename E, std::size_t N>
std::string_view NameOf(const EnumName<E> (&names)[N], E value) {
  for (const auto& n : names)
    if (n.value == value) return n.name;
  return "?";
}

template <typename E, std::size_t N>
std::optional<Expectation> ReadEnum(const toml::node& n,
                                    const EnumName<E> (&names)[N], E* out) {
  std::string expect = "one of";
  for (std::size_t i = 0; i < N; i++)
    expect += fmt::format("{} \"{}\"", i ? "," : "", names[i].name);
  const auto* v = n.as_string();
  if (!v) return expect;
  for (const auto& e : names) {
    if (e.name == v->get()) {
      *out = e.value;
      return std::nullopt;
    }
  }
  return expect;
}

std::optional<Expectation> ReadFacility(const toml::node& n, Config& c) {
  constexpr std::string_view kWhat =
      "a syslog facility: mail, daemon, auth, authpriv or local0 to local7";
  const auto* v = n.as_string();
  if (!v || FacilityFromName(v->get()) < 0) return std::string(kWhat);
  c.syslog_facility = v->get();
  return std::nullopt;
}

// The schema: every key the file may hold, in the order DescribeConfig
// prints them.  Ranges are wide enough for any sane site and narrow enough
// that a typo (a timeout in milliseconds, a missing digit) is caught.
const std::vector<KeySpec>& Schema() {
  static const std::vector<KeySpec> schema = {
      {"server", "listen",
       [](const toml::node& n, Config& c) { return ReadListen(n, &c.listen); }},
      {"server", "listen_tls",
       [](const toml::node& n, Config& c) {
         return ReadListen(n, &c.listen_tls);
       }},
      {"server", "hostname",
       [](const toml::node& n, Config& c) {
         auto err = ReadString(
             n, &c.hostname, 0, 253, HostChar,
             "a host name of letters, digits, '.' and '-' (or \"\")");
         if (!err &&
             (c.hostname.starts_with('.') || c.hostname.starts_with('-')))
           return std::optional<Expectation>(
               "a host name of letters, digits, '.' and '-' (or \"\")");
         return err;
       }},
      {"server", "max_sessions",
       [](const toml::node& n, Config& c) {
         return ReadInt(n, &c.max_sessions, 1, 100000);
       }},
      {"server", "max_sessions_per_address",
       [](const toml::node& n, Config& c) {
         return ReadInt(n, &c.max_sessions_per_address, 0, 100000);
       }},
      {"server", "proxy_listen",
       [](const toml::node& n, Config& c) {
         return ReadListen(n, &c.proxy_listen);
       }},
      {"server", "proxy_listen_tls",
       [](const toml::node& n, Config& c) {
         return ReadListen(n, &c.proxy_listen_tls);
       }},
      {"server", "proxy_trusted",
       [](const toml::node& n, Config& c) {
         return ReadNetworks(n, &c.proxy_trusted);
       }},
      {"server", "proxy_trust_tls",
       [](const toml::node& n, Config& c) {
         return ReadBool(n, &c.proxy_trust_tls);
       }},

      {"auth", "pam_service",
       [](const toml::node& n, Config& c) {
         return ReadString(n, &c.pam_service, 1, 64, NameChar,
                           "a PAM service name of letters, digits, '.', "
                           "'_' and '-'");
       }},
      {"auth", "popauth_file",
       [](const toml::node& n, Config& c) {
         return ReadAbsolutePath(n, &c.popauth_file);
       }},
      {"auth", "popauth_key",
       [](const toml::node& n, Config& c) {
         return ReadAbsolutePath(n, &c.popauth_key);
       }},
      // Zero is refused outright: root never logs in over POP3.
      {"auth", "min_uid",
       [](const toml::node& n, Config& c) {
         return ReadInt(n, &c.min_uid, 1, 4294967294);
       }},
      {"auth", "fail_delay_ms",
       [](const toml::node& n, Config& c) {
         return ReadInt(n, &c.fail_delay_ms, 0, 30000);
       }},
      {"auth", "max_failures",
       [](const toml::node& n, Config& c) {
         return ReadInt(n, &c.max_failures, 1, 100);
       }},
      // A delay beyond a minute only holds a monitor for the attacker's
      // benefit; the ban is the tool for a persistent one.
      {"auth", "max_delay_ms",
       [](const toml::node& n, Config& c) {
         return ReadInt(n, &c.max_delay_ms, 0, 60000);
       }},
      {"auth", "ban_after_failures",
       [](const toml::node& n, Config& c) {
         return ReadInt(n, &c.ban_after_failures, 0, 10000);
       }},
      {"auth", "ban_window",
       [](const toml::node& n, Config& c) {
         return ReadInt(n, &c.ban_window_s, 1, 86400);
       }},
      {"auth", "ban_time",
       [](const toml::node& n, Config& c) {
         return ReadInt(n, &c.ban_time_s, 1, 604800);
       }},
      {"auth", "penalty_file",
       [](const toml::node& n, Config& c) {
         return ReadAbsolutePath(n, &c.penalty_file);
       }},
      {"auth", "cleartext",
       [](const toml::node& n, Config& c) {
         return ReadEnum(n, kCleartextNames, &c.cleartext);
       }},
      {"auth", "apop",
       [](const toml::node& n, Config& c) {
         return ReadEnum(n, kApopNames, &c.apop);
       }},
      {"auth", "trusted_networks",
       [](const toml::node& n, Config& c) {
         return ReadNetworks(n, &c.trusted_networks);
       }},
      {"auth", "apop_users_must_use_apop",
       [](const toml::node& n, Config& c) -> std::optional<Expectation> {
         const auto* v = n.as_boolean();
         if (!v) return "true or false";
         c.apop_users_must_use_apop = v->get();
         return std::nullopt;
       }},

      {"tls", "certificate",
       [](const toml::node& n, Config& c) {
         return ReadOptionalPath(n, &c.tls_certificate);
       }},
      {"tls", "private_key",
       [](const toml::node& n, Config& c) {
         return ReadOptionalPath(n, &c.tls_private_key);
       }},
      // TLS 1.0 and 1.1 are deprecated (RFC 8996) and not offered at all.
      {"tls", "min_protocol",
       [](const toml::node& n, Config& c) -> std::optional<Expectation> {
         const auto* v = n.as_string();
         if (!v || (v->get() != "TLSv1.2" && v->get() != "TLSv1.3"))
           return "\"TLSv1.2\" or \"TLSv1.3\"";
         c.tls_min_protocol = v->get();
         return std::nullopt;
       }},
      {"tls", "ciphers",
       [](const toml::node& n, Config& c) {
         return ReadString(n, &c.tls_ciphers, 0, 1024, CipherChar,
                           "an OpenSSL cipher list, or \"\" for OpenSSL's "
                           "default");
       }},
      {"tls", "ciphersuites",
       [](const toml::node& n, Config& c) {
         return ReadString(n, &c.tls_ciphersuites, 0, 1024, CipherChar,
                           "an OpenSSL TLS 1.3 cipher suite list, or \"\" "
                           "for OpenSSL's default");
       }},

      {"mailbox", "format",
       [](const toml::node& n, Config& c) {
         return ReadEnum(n, kFormatNames, &c.format);
       }},
      {"mailbox", "maildir",
       [](const toml::node& n, Config& c) {
         return ReadTemplate(n, &c.maildir);
       }},
      {"mailbox", "mbox",
       [](const toml::node& n, Config& c) { return ReadTemplate(n, &c.mbox); }},

      {"session", "login_timeout",
       [](const toml::node& n, Config& c) {
         return ReadInt(n, &c.login_timeout_s, 1, 3600);
       }},
      {"session", "idle_timeout",
       [](const toml::node& n, Config& c) {
         return ReadInt(n, &c.idle_timeout_s, 1, 86400);
       }},
      {"session", "max_bad_commands",
       [](const toml::node& n, Config& c) {
         return ReadInt(n, &c.max_bad_commands, 1, 1000);
       }},
      {"session", "login_delay",
       [](const toml::node& n, Config& c) {
         return ReadInt(n, &c.login_delay_s, 0, 86400);
       }},
      {"session", "expire", ReadExpire},

      {"privsep", "front_user",
       [](const toml::node& n, Config& c) {
         auto err = ReadString(n, &c.front_user, 1, 32, NameChar,
                               "a user name of letters, digits, '.', '_' "
                               "and '-'");
         if (!err && c.front_user.starts_with('-'))
           return std::optional<Expectation>(
               "a user name of letters, digits, '.', '_' and '-'");
         return err;
       }},
      {"privsep", "empty_dir",
       [](const toml::node& n, Config& c) {
         return ReadAbsolutePath(n, &c.empty_dir);
       }},
      {"privsep", "worker_path",
       [](const toml::node& n, Config& c) {
         return ReadAbsolutePath(n, &c.worker_path);
       }},
      {"privsep", "landlock",
       [](const toml::node& n, Config& c) {
         return ReadEnum(n, kLandlockNames, &c.landlock);
       }},

      {"log", "facility", ReadFacility},

      {"audit", "linux_audit",
       [](const toml::node& n, Config& c) -> std::optional<Expectation> {
         const auto* v = n.as_boolean();
         if (!v) return "true or false";
         c.audit_linux = v->get();
         return std::nullopt;
       }},
      {"audit", "json_file",
       [](const toml::node& n, Config& c) {
         return ReadOptionalPath(n, &c.audit_json_file);
       }},
  };
  return schema;
}

bool KnownSection(std::string_view name) {
  for (const auto& k : Schema())
    if (k.section == name) return true;
  return false;
}

const KeySpec* FindKey(std::string_view section, std::string_view key) {
  for (const auto& k : Schema())
    if (k.section == section && k.key == key) return &k;
  return nullptr;
}

ConfigError ErrorAt(const std::string& path, const toml::source_region& where,
                    std::string_view what) {
  return ConfigError{fmt::format("{}:{}: {}", path, where.begin.line, what)};
}

void AddWarnings(Config& c) {
  auto warn = [&c](std::string w) { c.warnings.push_back(std::move(w)); };
  if (c.cleartext == CleartextPolicy::kAlways)
    warn(
        "auth.cleartext = \"always\": passwords may cross the network in "
        "clear text on any link");
  if (c.cleartext == CleartextPolicy::kTlsOrNetworks) {
    if (c.trusted_networks.empty())
      warn(
          "auth.cleartext = \"tls-or-networks\" with no "
          "auth.trusted_networks: the same as \"tls-only\"");
    else
      warn(fmt::format(
          "auth.cleartext = \"tls-or-networks\": passwords may cross the "
          "network in clear text from {}",
          fmt::join(c.trusted_networks, ", ")));
  } else if (!c.trusted_networks.empty()) {
    warn(
        "auth.trusted_networks has no effect unless auth.cleartext = "
        "\"tls-or-networks\"");
  }
  if (c.apop == ApopPolicy::kAllow)
    warn(
        "auth.apop = \"allow\": APOP is allowed without TLS: its MD5 "
        "challenge-response can be attacked offline");
  if (c.tls_certificate.empty() &&
      (c.cleartext == CleartextPolicy::kTlsOnly ||
       c.cleartext == CleartextPolicy::kTlsOrNetworks))
    warn(
        "tls.certificate is not set: no link has TLS, so passwords "
        "(USER/PASS, AUTH PLAIN) are refused on every link that "
        "auth.cleartext does not trust");
  if (c.fail_delay_ms == 0)
    warn("auth.fail_delay_ms = 0: a failed login costs the client no time");
  if (c.ban_after_failures == 0)
    warn(
        "auth.ban_after_failures = 0: an address that keeps failing is "
        "never refused");
  if (c.proxy_trust_tls)
    warn(
        "server.proxy_trust_tls = true: a balancer in server.proxy_trusted "
        "that says its client used TLS lets passwords through; the link "
        "from the balancer to popguard carries them in clear text");
  if (!c.proxy_trusted.empty() && c.proxy_listen.empty() &&
      c.proxy_listen_tls.empty())
    warn(
        "server.proxy_trusted has no effect without server.proxy_listen or "
        "server.proxy_listen_tls");
  if (c.min_uid < 1000)
    warn(fmt::format(
        "auth.min_uid = {}: system accounts below uid 1000 may log in",
        c.min_uid));
  if (c.idle_timeout_s < 600)
    warn(fmt::format(
        "session.idle_timeout = {}: RFC 1939 section 3 asks for an idle "
        "timeout of at least 10 minutes (600 seconds)",
        c.idle_timeout_s));
}

// Where each key was set, for errors that involve more than one key.
using Places = std::vector<std::pair<std::string, toml::source_region>>;

ConfigError ErrorAtKey(const std::string& path, const Places& places,
                       std::string_view key, std::string_view what) {
  for (const auto& [name, where] : places)
    if (name == key)
      return ErrorAt(path, where, fmt::format("key '{}': {}", key, what));
  return ConfigError{fmt::format("{}: key '{}': {}", path, key, what)};
}

// Rules that tie keys together; each error points at the key to change.
std::optional<ConfigError> CheckTogether(const Config& c,
                                         const std::string& path,
                                         const Places& places) {
  if (c.tls_certificate.empty() != c.tls_private_key.empty()) {
    bool cert = !c.tls_certificate.empty();
    return ErrorAtKey(path, places,
                      cert ? "tls.certificate" : "tls.private_key",
                      cert ? "needs tls.private_key as well"
                           : "needs tls.certificate as well");
  }
  if (!c.listen_tls.empty() && c.tls_certificate.empty())
    return ErrorAtKey(path, places, "server.listen_tls",
                      "needs tls.certificate and tls.private_key");
  if (!c.proxy_listen_tls.empty() && c.tls_certificate.empty())
    return ErrorAtKey(path, places, "server.proxy_listen_tls",
                      "needs tls.certificate and tls.private_key");
  bool proxied = !c.proxy_listen.empty() || !c.proxy_listen_tls.empty();
  if (proxied && c.proxy_trusted.empty())
    return ErrorAtKey(
        path, places,
        c.proxy_listen.empty() ? "server.proxy_listen_tls"
                               : "server.proxy_listen",
        "needs server.proxy_trusted: the addresses of the balancers");
  if (c.listen.empty() && c.listen_tls.empty() && !proxied)
    return ErrorAtKey(path, places, "server.listen",
                      "expected at least one address in server.listen or "
                      "server.listen_tls");
  // Each address is bound once, by one kind of listener.
  const std::pair<std::string_view, const std::vector<std::string>*> lists[] = {
      {"server.listen", &c.listen},
      {"server.listen_tls", &c.listen_tls},
      {"server.proxy_listen", &c.proxy_listen},
      {"server.proxy_listen_tls", &c.proxy_listen_tls}};
  for (std::size_t i = 0; i < std::size(lists); i++)
    for (std::size_t j = i + 1; j < std::size(lists); j++)
      for (const auto& a : *lists[i].second)
        for (const auto& b : *lists[j].second)
          if (a == b)
            return ErrorAtKey(
                path, places, lists[j].first,
                fmt::format("'{}' is also in {}", b, lists[i].first));
  return std::nullopt;
}

std::expected<Config, ConfigError> Apply(const toml::table& root,
                                         const std::string& path) {
  Config c;
  c.path = path;
  c.worker_path = POPGUARD_WORKER_PATH;
  Places places;

  for (const auto& [name, section] : root) {
    if (!KnownSection(name.str()))
      return std::unexpected(ErrorAt(
          path, name.source(), fmt::format("unknown key '{}'", name.str())));
    const auto* table = section.as_table();
    if (!table)
      return std::unexpected(
          ErrorAt(path, section.source(),
                  fmt::format("key '{}': expected a table", name.str())));

    for (const auto& [key, value] : *table) {
      auto full = fmt::format("{}.{}", name.str(), key.str());
      const KeySpec* spec = FindKey(name.str(), key.str());
      if (!spec)
        return std::unexpected(
            ErrorAt(path, key.source(), fmt::format("unknown key '{}'", full)));
      if (auto err = spec->handle(value, c))
        return std::unexpected(
            ErrorAt(path, value.source(),
                    fmt::format("key '{}': expected {}", full, *err)));
      places.emplace_back(full, value.source());
    }
  }

  if (auto err = CheckTogether(c, path, places)) return std::unexpected(*err);
  AddWarnings(c);
  return c;
}

// TOML text for one string, escaped by toml++ itself so that the output
// always parses back.
std::string Quote(const std::string& s) {
  std::ostringstream out;
  out << toml::value<std::string>(s);
  return out.str();
}

std::string QuoteList(const std::vector<std::string>& list) {
  std::string out = "[";
  for (std::size_t i = 0; i < list.size(); i++)
    out += (i ? ", " : "") + Quote(list[i]);
  return out + "]";
}

}  // namespace

std::expected<Config, ConfigError> ParseConfig(std::string_view text,
                                               const std::string& path) {
#if TOML_EXCEPTIONS
  try {
    toml::table root = toml::parse(text, std::string_view(path));
    return Apply(root, path);
  } catch (const toml::parse_error& e) {
    return std::unexpected(ErrorAt(path, e.source(), e.description()));
  }
#else
  toml::parse_result result = toml::parse(text, std::string_view(path));
  if (!result)
    return std::unexpected(
        ErrorAt(path, result.error().source(), result.error().description()));
  return Apply(result.table(), path);
#endif
}

std::expected<Config, ConfigError> LoadConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return std::unexpected(ConfigError{
        fmt::format("{}: cannot open: {}", path, std::strerror(errno))});
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad())
    return std::unexpected(ConfigError{fmt::format("{}: read error", path)});
  return ParseConfig(text.str(), path);
}

std::string DescribeConfig(const Config& c) {
  std::string out;
  auto line = [&out](std::string_view key, std::string_view value) {
    out += fmt::format("{} = {}\n", key, value);
  };

  out += "# popguard: effective configuration";
  out += c.path.empty()
             ? "\n"
             : fmt::format(" (read from {})\n", Sanitize(c.path, 4096));

  out += "\n[server]\n";
  line("listen", QuoteList(c.listen));
  line("listen_tls", QuoteList(c.listen_tls));
  line("hostname", Quote(c.hostname));
  line("max_sessions", fmt::to_string(c.max_sessions));
  line("max_sessions_per_address", fmt::to_string(c.max_sessions_per_address));
  line("proxy_listen", QuoteList(c.proxy_listen));
  line("proxy_listen_tls", QuoteList(c.proxy_listen_tls));
  line("proxy_trusted", QuoteList(c.proxy_trusted));
  line("proxy_trust_tls", c.proxy_trust_tls ? "true" : "false");

  out += "\n[auth]\n";
  line("pam_service", Quote(c.pam_service));
  line("popauth_file", Quote(c.popauth_file));
  line("popauth_key", Quote(c.popauth_key));
  line("min_uid", fmt::to_string(c.min_uid));
  line("fail_delay_ms", fmt::to_string(c.fail_delay_ms));
  line("max_failures", fmt::to_string(c.max_failures));
  line("max_delay_ms", fmt::to_string(c.max_delay_ms));
  line("ban_after_failures", fmt::to_string(c.ban_after_failures));
  line("ban_window", fmt::to_string(c.ban_window_s));
  line("ban_time", fmt::to_string(c.ban_time_s));
  line("penalty_file", Quote(c.penalty_file));
  line("cleartext", Quote(std::string(NameOf(kCleartextNames, c.cleartext))));
  line("apop", Quote(std::string(NameOf(kApopNames, c.apop))));
  line("trusted_networks", QuoteList(c.trusted_networks));
  line("apop_users_must_use_apop",
       c.apop_users_must_use_apop ? "true" : "false");

  out += "\n[tls]\n";
  line("certificate", Quote(c.tls_certificate));
  line("private_key", Quote(c.tls_private_key));
  line("min_protocol", Quote(c.tls_min_protocol));
  line("ciphers", Quote(c.tls_ciphers));
  line("ciphersuites", Quote(c.tls_ciphersuites));

  out += "\n[mailbox]\n";
  line("format", Quote(std::string(NameOf(kFormatNames, c.format))));
  line("maildir", Quote(c.maildir));
  line("mbox", Quote(c.mbox));

  out += "\n[session]\n";
  line("login_timeout", fmt::to_string(c.login_timeout_s));
  line("idle_timeout", fmt::to_string(c.idle_timeout_s));
  line("max_bad_commands", fmt::to_string(c.max_bad_commands));
  line("login_delay", fmt::to_string(c.login_delay_s));
  // Not announced: the key is shown commented out, so that the output
  // still reads back to the same settings.
  if (c.expire.empty())
    out += "# expire = \"never\"  (not set: not announced)\n";
  else if (c.expire == "NEVER")
    line("expire", Quote("never"));
  else
    line("expire", c.expire);

  out += "\n[privsep]\n";
  line("front_user", Quote(c.front_user));
  line("empty_dir", Quote(c.empty_dir));
  line("worker_path",
       Quote(c.worker_path.empty() ? POPGUARD_WORKER_PATH : c.worker_path));
  line("landlock", Quote(std::string(NameOf(kLandlockNames, c.landlock))));

  out += "\n[log]\n";
  line("facility", Quote(c.syslog_facility));

  out += "\n[audit]\n";
  line("linux_audit", c.audit_linux ? "true" : "false");
  line("json_file", Quote(c.audit_json_file));
  return out;
}

std::expected<std::string, ConfigError> ExpandMailboxPath(
    const std::string& tmpl, const std::string& user, const std::string& home) {
  auto fail = [&tmpl](std::string_view why) {
    return std::unexpected(
        ConfigError{fmt::format("mailbox template '{}': {}", tmpl, why)});
  };
  // A name that could climb or leave a directory must never reach a path,
  // whatever the template; passwd and PAM should not yield one, but the
  // name may come from a directory service popguard does not control.
  if (user.empty() || user.starts_with('.') ||
      user.find_first_of(std::string_view("/\0", 2)) != std::string::npos)
    return fail(fmt::format("unusable user name '{}'", Sanitize(user)));

  std::string out;
  std::size_t i = 0;
  if (tmpl.starts_with('~') && (tmpl.size() == 1 || tmpl[1] == '/')) {
    // An empty home would turn "~/Maildir" into "/Maildir", a path shared
    // by every user without one.
    if (!home.starts_with('/'))
      return fail(fmt::format("home directory '{}' is not an absolute path",
                              Sanitize(home)));
    out = home;
    i = 1;
  }
  for (; i < tmpl.size(); i++) {
    if (tmpl[i] != '%') {
      out += tmpl[i];
      continue;
    }
    if (i + 1 == tmpl.size()) return fail("ends in a lone '%'");
    char esc = tmpl[++i];
    if (esc == 'u')
      out += user;
    else if (esc == '%')
      out += '%';
    else
      return fail(fmt::format("unknown escape '%{}'", Sanitize({&esc, 1})));
  }
  if (!out.starts_with('/')) return fail("the result is not an absolute path");
  if (out.find('\0') != std::string::npos)
    return fail("the result holds a NUL byte");
  return out;
}

}  // namespace popguard
