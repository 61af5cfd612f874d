// The POP3 line protocol, shared by the front (AUTHORIZATION) and the
// worker (TRANSACTION): splitting a byte stream into command lines, parsing
// a command, and the numbers and limits the RFCs set.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace popguard::pop3 {

// RFC 2449 section 4 caps a command line at 255 octets with CRLF.  AUTH
// PLAIN's initial response (RFC 5034) and long user names push real
// clients past that, so we accept more, and answer a longer line with
// "-ERR line too long" rather than cutting it.
inline constexpr std::size_t kMaxCommandLine = 1024;

// Splits received bytes into lines.  CRLF and bare LF both end a line
// (some clients send LF); a CR elsewhere stays in the line.  A line longer
// than the limit is reported once as too long and its remaining bytes, up
// to the next line end, are skipped.
//
// Memory: besides the complete lines fed and not yet taken with Next(), the
// reader holds at most max_line + 2 bytes, however long a line a client
// sends.  Callers bound the rest by draining Next() after each Feed() (or
// by reading no more while Pending() is large).  Bytes the buffer held are
// overwritten before its memory is reused or freed, as it may hold a
// password.
class LineReader {
 public:
  explicit LineReader(std::size_t max_line = kMaxCommandLine)
      : max_line_(max_line) {}

  void Feed(std::string_view bytes);

  enum class Status {
    kLine,      // *line holds one line, without its line end
    kNeedMore,  // no complete line buffered
    kTooLong,   // a line over the limit was dropped
  };
  Status Next(std::string* line);

  // Bytes received but not yet returned as lines: what a client pipelined
  // behind the last command read.
  std::string_view Pending() const;
  // Drops everything buffered (after STLS, pipelined bytes are discarded).
  void Clear();
  // Overwrites the buffer (it may have held a password).
  void Wipe();

 private:
  std::size_t TailStart() const;
  bool OverLimit(std::size_t len) const;

  std::size_t max_line_;
  std::string buf_;
  std::size_t start_ = 0;
  bool skipping_ = false;
};

enum class Verb {
  kUnknown,
  // RFC 1939
  kUser,
  kPass,
  kApop,
  kQuit,
  kStat,
  kList,
  kRetr,
  kDele,
  kNoop,
  kRset,
  kTop,
  kUidl,
  kCapa,  // RFC 2449
  kStls,  // RFC 2595
  kAuth,  // RFC 5034
};

// A parsed command line.  The verb is case-insensitive; `args` are the
// words after it, split at runs of spaces, except for PASS, whose single
// argument is the rest of the line after the first space, kept as sent
// (RFC 1939 section 7 lets a password hold spaces); "PASS" and "PASS "
// have no argument.  A line holding NUL, CR or LF is kUnknown with no
// arguments: a NUL would cut a name or password short wherever it becomes
// a C string.  A leading space makes the verb empty, so kUnknown.
struct Command {
  Verb verb = Verb::kUnknown;
  std::string name;  // the verb as sent, upper-cased, bounded
  std::vector<std::string> args;
};

Command ParseCommand(std::string_view line);

// A message number: 1 to 2^31-1, decimal digits only, no sign, no spaces.
// Leading zeros are accepted ("007" is 7): RFC 1939 does not forbid them,
// and a number means the same however it is written.
std::optional<std::uint32_t> ParseMessageNumber(std::string_view s);

// A non-negative count (TOP's line count): digits only, fits 32 bits.
std::optional<std::uint32_t> ParseCount(std::string_view s);

}  // namespace popguard::pop3
