// The JSON-lines audit file: one JSON object per line, each carrying the
// SHA-256 of the line before it, so that a record edited, removed or moved
// shows when the file is checked (popguard --verify-audit FILE).
//
// A line reads
//
//   {"seq":7,"time":"2024-05-01T09:30:00.123Z","prev":"<64 hex>",
//    "session":"3f9a0c12d4e5","event":"auth",...}
//
// (on one line).  "seq" counts from 1 in each file; "prev" is the
// lower-case hex SHA-256 of the previous line's bytes without its newline,
// and 64 zeros on the first line.  A new file (after logrotate moves the
// old one away) starts a new chain: a rotated file is checked on its own.
//
// What the chain cannot show by itself: records cut from the end of the
// file (nothing follows them to notice), and a file rewritten whole with
// fresh digests.  The same records go to syslog, ideally to a remote
// loghost, which is the anchor for both.
//
// Many monitor processes append at once.  Each append opens the file,
// takes an exclusive flock, reads only the last line (seeking back from
// the end), and writes its line with one write(2) to an O_APPEND
// descriptor, so that lines never interleave and each sees its
// predecessor.
#pragma once

#include <chrono>
#include <cstdint>
#include <expected>
#include <string>
#include <string_view>

namespace popguard::monitor {

// Appends `s` to `out` as a JSON string, quotes included.  Every byte that
// is not printable ASCII is written as \u00XX, so the result is valid JSON
// (and ASCII) for any input.
void AppendJsonString(std::string* out, std::string_view s);

// Lower-case hex SHA-256 of `bytes`.
std::string Sha256Hex(std::string_view bytes);

// RFC 3339 UTC with milliseconds: "2024-05-01T09:30:00.123Z".
std::string Rfc3339Utc(std::chrono::system_clock::time_point t);

// Where a file's chain stands: its last record's seq and the digest that
// the next record must carry as "prev".
struct ChainTail {
  std::uint64_t seq = 0;
  std::string digest = std::string(64, '0');
  bool ends_in_newline = true;  // false after a write cut short
};

// Reads the tail of the chain from an open, readable file, reading back
// from the end only as far as the start of the last line.  An empty file
// gives seq 0 and the zero digest.  Fails only if the file cannot be read
// (errno's text).
std::expected<ChainTail, std::string> ReadChainTail(int fd);

// Appends one record to the file at `path`, creating it root-only (0600)
// if missing.  `members` are the record's own JSON members, comma
// separated, without braces ("\"event\":\"auth\",..."); seq, time and prev
// are put in front of them under the lock.  Returns the record's seq, or
// why it was not written.
std::expected<std::uint64_t, std::string> AppendChained(
    const std::string& path, std::string_view members);

// Opens (creating, 0600) the file as AppendChained would, and closes it:
// lets the daemon refuse to start when its audit file cannot be written.
std::expected<void, std::string> CheckChainFile(const std::string& path);

// The outcome of checking a file.  When !intact, `line` is the first line
// (from 1) at which the chain breaks and `why` says how.
struct ChainReport {
  bool intact = true;
  std::uint64_t records = 0;
  std::uint64_t line = 0;
  std::string why;
};

// Checks every line of an open file from its start: valid JSON object,
// "seq" one more than the line before (1 on the first line), "prev" the
// digest of the line before (zeros on the first), a final newline.
ChainReport VerifyChain(int fd);

}  // namespace popguard::monitor
