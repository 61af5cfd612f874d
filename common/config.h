// popguard's configuration: one TOML file, parsed with toml++.
//
// Every key has a default that is safe for an Internet-facing server; an
// unknown key, a value of the wrong type or out of range is an error that
// names the file, the line and the key, and the daemon does not start (or,
// on SIGHUP, keeps the configuration it has).
#pragma once

#include <cstdint>
#include <expected>
#include <string>
#include <vector>

namespace popguard {

// Who may send a password (USER/PASS, AUTH PLAIN) on which link.
enum class CleartextPolicy {
  kAlways,         // any link (Qpopper's behaviour; only behind another guard)
  kNever,          // no link: APOP only
  kTlsOnly,        // only over TLS (the default)
  kTlsOrNetworks,  // over TLS, or from an address in trusted_networks
};

// Where APOP may be used.
enum class ApopPolicy {
  kAllow,    // any link
  kTlsOnly,  // only over TLS
  kNever,    // not offered
};

enum class MailboxFormatSetting { kMaildir, kMbox };

// What to do on a kernel without Landlock.
enum class LandlockSetting {
  kBestEffort,  // warn at start, serve with seccomp and the rest
  kRequired,    // refuse to start
};

struct Config {
  std::string path;  // the file this was read from
  // Settings that are legal but weaken the server ("clear text allowed on
  // every link"); printed by --check-config and logged at start.
  std::vector<std::string> warnings;

  // [server]
  std::vector<std::string> listen{"0.0.0.0:110", "[::]:110"};
  // Implicit TLS (POP3S, RFC 8314); needs [tls] certificate and key.
  std::vector<std::string> listen_tls;
  std::string hostname;  // empty: gethostname(); used in the APOP challenge
  std::uint32_t max_sessions = 200;  // all sessions at once
  // Sessions at once from one client address (an IPv6 /64 counts as one);
  // 0: no limit.  Counted in the penalty file, so that it holds in inetd
  // mode and behind a balancer too.
  std::uint32_t max_sessions_per_address = 10;
  // Listeners whose clients come through a balancer that sends the PROXY
  // protocol header (v1 or v2) first; the _tls ones then start TLS.
  std::vector<std::string> proxy_listen;
  std::vector<std::string> proxy_listen_tls;
  // Who may send a PROXY header; a connection from anywhere else to a
  // proxy listener is closed unread.
  std::vector<std::string> proxy_trusted;
  // Whether a v2 header saying the client used TLS to the balancer makes
  // the link count as TLS for the clear-text policy.
  bool proxy_trust_tls = false;

  // [auth]
  std::string pam_service = "popguard";
  std::string popauth_file = "/etc/pop.auth";
  std::string popauth_key = "/etc/popguard/pop.auth.key";
  std::uint32_t min_uid = 1000;        // root and system accounts cannot log in
  std::uint32_t fail_delay_ms = 2000;  // a failure answers no sooner
  std::uint32_t max_failures = 3;      // then the session ends
  // Each failure from an address waits fail_delay_ms * 2^(n-1), n being
  // the address's recent failures, but never longer than this.
  std::uint32_t max_delay_ms = 15000;
  // An address with this many failures, each less than ban_window seconds
  // after the one before, is refused for ban_time seconds; 0: never.
  std::uint32_t ban_after_failures = 10;
  std::uint32_t ban_window_s = 600;
  std::uint32_t ban_time_s = 900;
  // The state shared by every monitor process: failures and bans per
  // address, sessions per address, last login per user.
  std::string penalty_file = "/run/popguard/penalties";
  CleartextPolicy cleartext = CleartextPolicy::kTlsOnly;
  ApopPolicy apop = ApopPolicy::kAllow;
  // Networks ("192.0.2.0/24", "2001:db8::/32", "127.0.0.1") from which
  // tls-or-networks lets a password cross without TLS.  Loopback is not
  // trusted unless listed.
  std::vector<std::string> trusted_networks;
  // Qpopper's default rule: a user with a pop.auth entry must use APOP.
  bool apop_users_must_use_apop = false;

  // [tls]  (no certificate: no STLS, no POP3S)
  std::string tls_certificate;  // PEM chain
  std::string tls_private_key;  // PEM, read as root before any front runs
  std::string tls_min_protocol = "TLSv1.2";
  std::string tls_ciphers;       // TLS <= 1.2; empty: OpenSSL's default
  std::string tls_ciphersuites;  // TLS 1.3; empty: OpenSSL's default

  // [mailbox]
  MailboxFormatSetting format = MailboxFormatSetting::kMaildir;
  std::string maildir = "~/Maildir";  // ~ is the home, %u the user name
  std::string mbox = "/var/mail/%u";

  // [session]
  std::uint32_t login_timeout_s = 60;   // before authentication
  std::uint32_t idle_timeout_s = 600;   // after; RFC 1939 section 3 minimum
  std::uint32_t max_bad_commands = 10;  // then the session ends
  // RFC 2449 LOGIN-DELAY: seconds a user must wait between logins;
  // 0: not announced, not enforced.
  std::uint32_t login_delay_s = 0;
  // RFC 2449 EXPIRE as announced: "" (not announced), "NEVER", or a
  // number of days.  Announced only: popguard deletes no mail by age.
  std::string expire;

  // [privsep]
  std::string front_user = "popguard";  // the unprivileged login user
  std::string empty_dir = "/var/lib/popguard/empty";  // the front's root
  std::string worker_path;
  LandlockSetting landlock =
      LandlockSetting::kBestEffort;  // default: the installed popguard-worker

  // [log]
  std::string syslog_facility = "mail";

  // [audit]  (syslog always gets every record; these add sinks)
  // USER_AUTH, USER_LOGIN and USER_END records to the Linux audit
  // subsystem; a kernel without audit costs a warning at start.
  bool audit_linux = true;
  // A JSON-lines file of the same records, chained by SHA-256; empty: none.
  // Its directory must exist; the file is created root-only (0600).
  std::string audit_json_file;
};

struct ConfigError {
  std::string message;  // "FILE:LINE: key 'x': what is wrong"
};

// Reads and validates the file.  A missing file is an error.
std::expected<Config, ConfigError> LoadConfig(const std::string& path);

// Parses TOML text as if read from `path` (for tests and LoadConfig).  On
// success, Config::warnings lists every legal setting that exposes
// something (clear text reachable off TLS, APOP without TLS, ...).
std::expected<Config, ConfigError> ParseConfig(std::string_view text,
                                               const std::string& path);

// The effective settings as TOML, every key shown (--check-config).
std::string DescribeConfig(const Config& c);

// Expands a mailbox template: "~" at the start is `home`, "%u" the user,
// "%%" a percent sign.  A result that is not absolute is an error, and so
// are a user name that is empty, starts with '.' or holds '/' or NUL, a
// "~" with a home that is not absolute, and any other '%' escape.
std::expected<std::string, ConfigError> ExpandMailboxPath(
    const std::string& tmpl, const std::string& user, const std::string& home);

}  // namespace popguard
