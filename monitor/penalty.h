// The penalty file: what every monitor process must agree on about a
// client address or a user, whichever process serves the connection.
//
// Standalone, behind a balancer, or started by xinetd once per connection,
// each monitor opens the same fixed-size file (root, 0600; only monitors
// touch it, never the front or the worker) and works on it under flock(2).
// It holds:
//
//   - per address (IPv4 by address, IPv6 by /64, since one host on IPv6
//     usually owns a whole /64): recent failures, the last failure, and a
//     ban's end;
//   - per user (for LOGIN-DELAY): the last successful login;
//   - per session: which monitor (pid and start time) serves which
//     address, so that sessions per address can be counted.  A monitor
//     that is killed leaves a slot whose pid is dead or reused; the start
//     time tells, so the count never stays too high.
//
// The file never grows: records live in buckets chosen by a keyed hash
// (the key is random per file, so a client cannot aim at a bucket), and a
// full bucket gives up its least useful record (one with nothing left to
// enforce first, then the one seen longest ago).  Times are wall-clock
// seconds, so that the file means the same to every process.
//
// Failures are counted in a row: each failure less than ban_window after
// the one before adds one, a longer pause starts again at one.  That is
// stricter than a fixed window (a slow guesser is not forgiven at each
// window boundary) and needs one time stamp per address.  A successful
// login does not clear an address's failures: an attacker who owns one
// account could otherwise reset the count between guesses at others.
#pragma once

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>

#include "common/config.h"

namespace popguard::monitor {

// An address as the table keys it: IPv4 as an IPv4-mapped IPv6 address,
// IPv6 cut to its /64.
struct AddressKey {
  std::array<unsigned char, 16> bytes{};
  bool operator==(const AddressKey&) const = default;
};

// The key for a numeric address; none for "unknown", "local" and the like.
std::optional<AddressKey> KeyForAddress(std::string_view numeric);

// The settings the table applies, taken from the configuration.
struct PenaltySettings {
  std::uint32_t fail_delay_ms = 2000;
  std::uint32_t max_delay_ms = 15000;
  std::uint32_t ban_after_failures = 10;  // 0: never ban
  std::int64_t ban_window_s = 600;
  std::int64_t ban_time_s = 900;
  std::uint32_t max_sessions_per_address = 10;  // 0: no limit
  std::int64_t login_delay_s = 0;               // 0: not enforced

  static PenaltySettings From(const Config& c);
};

// How long the n-th failure in a row waits: fail_delay * 2^(n-1), at most
// max_delay.
std::chrono::milliseconds FailureDelay(const PenaltySettings& s,
                                       std::uint32_t failures);

enum class PenaltyError {
  kOpen,     // the file or its directory cannot be created or opened
  kNotSafe,  // not a regular file of ours, or readable by others
  kLock,     // flock failed
  kIo,       // a read or write came up short
};

std::string_view PenaltyErrorText(PenaltyError e);

class PenaltyTable {
 public:
  // Opens `path`, creating it (mode 0600, and its directory, 0700, if
  // missing) and laying it out if it is new or not in this format.  The
  // file must be a regular file owned by the effective user and closed to
  // group and others.  Each process opens its own: the lock belongs to
  // the open file, so a descriptor inherited across fork would share it.
  static std::expected<PenaltyTable, PenaltyError> Open(
      const std::string& path);

  PenaltyTable(PenaltyTable&& other) noexcept;
  PenaltyTable& operator=(PenaltyTable&& other) noexcept;
  ~PenaltyTable();

  struct Admission {
    enum class Verdict { kAdmit, kBanned, kTooManySessions };
    Verdict verdict = Verdict::kAdmit;
    std::int64_t banned_until = 0;  // kBanned
    std::uint32_t sessions = 0;     // live sessions of the address, before us
    bool registered = false;        // kAdmit: a session slot holds us
  };

  // At connect: refuses a banned address, or one that has
  // max_sessions_per_address live sessions; otherwise records the session
  // of process `pid` (to be removed by Leave, or found dead later).
  std::expected<Admission, PenaltyError> Admit(const AddressKey& key, pid_t pid,
                                               const PenaltySettings& s,
                                               std::int64_t now);

  // The session of `pid` is over.
  std::expected<void, PenaltyError> Leave(pid_t pid);

  struct Failure {
    std::uint32_t failures = 0;  // in a row, this one included
    std::chrono::milliseconds delay{0};
    bool banned_now = false;  // this failure started a ban
    std::int64_t banned_until = 0;
  };

  // A failed login from `key`.
  std::expected<Failure, PenaltyError> RecordFailure(const AddressKey& key,
                                                     const PenaltySettings& s,
                                                     std::int64_t now);

  // The end of the ban on `key`, if one is running at `now`.
  std::expected<std::optional<std::int64_t>, PenaltyError> BannedUntil(
      const AddressKey& key, const PenaltySettings& s, std::int64_t now);

  // LOGIN-DELAY: if `user` logged in less than login_delay ago, the
  // seconds left to wait; otherwise 0, and `now` becomes the last login.
  std::expected<std::int64_t, PenaltyError> CheckLogin(std::string_view user,
                                                       const PenaltySettings& s,
                                                       std::int64_t now);

 private:
  explicit PenaltyTable(int fd) : fd_(fd) {}
  class Locked;

  int fd_ = -1;
};

// Wall-clock seconds, as the table stores them.
std::int64_t PenaltyNow();

}  // namespace popguard::monitor
