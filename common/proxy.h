// The PROXY protocol, versions 1 and 2, as HAProxy specifies it
// (https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt): the
// header a balancer sends first on each connection to say which client it
// carries.
//
// The monitor reads the header as root, before any other process exists
// for the connection, and only on listeners the admin marked for it and
// from balancers the admin listed.  The parser is strict: a header that
// is not exactly as specified ends the connection, since the receiver
// must not guess (spec section 2).  It is a pure function over bytes, so
// that unit tests and a fuzzer (tests/fuzz/proxy_fuzz.cc) can drive it.
//
//   v1: "PROXY TCP4 192.0.2.1 198.51.100.1 56324 110\r\n", at most 107
//       bytes; "PROXY UNKNOWN ..." means "use the real peer".
//   v2: a 16-byte binary header (12-byte signature, version and command,
//       family and protocol, length) then the addresses and TLVs.  LOCAL
//       (a balancer's health check) means "use the real peer".
//
// Accepted: v1 TCP4, TCP6, UNKNOWN; v2 LOCAL (any family, ignored), v2
// PROXY over TCP/IPv4, TCP/IPv6, or UNSPEC (used as the real peer).
// Refused: UDP and UNIX-socket clients, which have no address the
// policy could use; unknown versions, commands and families; a v2 body
// over kMaxV2Body bytes; TLVs that overrun; a CRC32C TLV that does not
// match.  Of the TLVs only PP2_TYPE_SSL (with its version and cipher
// sub-TLVs) and PP2_TYPE_CRC32C are interpreted; others are skipped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace popguard::proxy {

// Spec 2.1: the longest v1 line, CRLF included.
inline constexpr std::size_t kMaxV1Line = 107;
inline constexpr std::size_t kV2Fixed = 16;
// The longest v2 body (addresses and TLVs) accepted.  HAProxy's largest
// TLVs (unique id, authority, client certificate CN) fit many times over.
inline constexpr std::size_t kMaxV2Body = 4080;

struct Header {
  int version = 0;     // 1 or 2
  bool local = false;  // use the real peer: v2 LOCAL or UNSPEC, v1 UNKNOWN
  std::string source;  // the client, numeric; empty when local
  std::uint16_t source_port = 0;
  std::string destination;  // what the client connected to, numeric
  std::uint16_t destination_port = 0;
  // v2 PP2_TYPE_SSL with the PP2_CLIENT_SSL bit: the client used TLS to
  // the balancer.  The version and cipher are as the balancer sent them
  // (unsanitised: escape before logging).
  bool ssl = false;
  std::string ssl_version;
  std::string ssl_cipher;
  std::size_t length = 0;  // bytes the header took on the wire
};

enum class Status {
  kDone,      // `header` holds the result
  kNeedMore,  // the bytes so far are a valid beginning
  kInvalid,   // not a header as specified; `error` says why
};

struct ParseResult {
  Status status = Status::kInvalid;
  Header header;
  // kNeedMore: at least this many more bytes are needed.  For v2 it is
  // exactly what the header still lacks; for v1 every byte up to and
  // including the first LF belongs to the header.
  std::size_t need = 0;
  std::string_view error;  // kInvalid: a fixed text for the log
};

// Parses the header at the start of `in`.  Bytes after it (a client's
// first command) are left alone; header.length says where they start.
ParseResult ParseHeader(std::string_view in);

// Reads one header from the socket `fd`, never a byte beyond it, within
// `timeout_ms`.  On failure returns false and sets *error to a fixed text
// ("no PROXY header in time", or the parser's reason).
bool ReadHeader(int fd, int timeout_ms, Header* out, std::string_view* error);

}  // namespace popguard::proxy
