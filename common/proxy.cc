#include "common/proxy.h"

#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace popguard::proxy {
namespace {

constexpr std::string_view kV1Prefix = "PROXY";
constexpr std::string_view kV2Signature("\r\n\r\n\0\r\nQUIT\n", 12);

// v2 byte 14: family (high nibble) and transport (low nibble).
constexpr unsigned char kUnspec = 0x00;
constexpr unsigned char kTcp4 = 0x11;
constexpr unsigned char kTcp6 = 0x21;

constexpr unsigned char kTlvCrc32c = 0x03;
constexpr unsigned char kTlvSsl = 0x20;
constexpr unsigned char kSubSslVersion = 0x21;
constexpr unsigned char kSubSslCipher = 0x23;
constexpr unsigned char kClientSsl = 0x01;

ParseResult Invalid(std::string_view why) {
  ParseResult r;
  r.status = Status::kInvalid;
  r.error = why;
  return r;
}

ParseResult NeedMore(std::size_t n) {
  ParseResult r;
  r.status = Status::kNeedMore;
  r.need = n;
  return r;
}

// Spec 2.1: decimal, 0 to 65535, no leading zero.
bool ParsePort(std::string_view s, std::uint16_t* out) {
  if (s.empty() || s.size() > 5 || (s.size() > 1 && s[0] == '0')) return false;
  unsigned v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v > 65535) return false;
  *out = static_cast<std::uint16_t>(v);
  return true;
}

// inet_pton refuses leading zeros in IPv4 (spec 2.1) and anything that is
// not exactly one address; the text is then put back in canonical form.
bool ParseAddress(std::string_view s, int family, std::string* out) {
  if (s.empty() || s.size() > 45) return false;
  std::string text(s);
  unsigned char raw[16];
  if (inet_pton(family, text.c_str(), raw) != 1) return false;
  char buf[INET6_ADDRSTRLEN];
  if (!inet_ntop(family, raw, buf, sizeof buf)) return false;
  *out = buf;
  return true;
}

ParseResult ParseV1Line(std::string_view line, std::size_t length) {
  // line: without the CRLF.  Fields are separated by exactly one space.
  std::string_view fields[7];
  std::size_t n = 0;
  while (n < 7) {
    std::size_t sp = line.find(' ');
    fields[n++] = line.substr(0, sp);
    if (sp == std::string_view::npos) break;
    line.remove_prefix(sp + 1);
  }
  ParseResult r;
  r.header.version = 1;
  r.header.length = length;
  if (n >= 2 && fields[1] == "UNKNOWN") {
    // Spec 2.1: whatever follows UNKNOWN is ignored.
    r.status = Status::kDone;
    r.header.local = true;
    return r;
  }
  if (n != 6 || fields[0] != kV1Prefix)
    return Invalid("v1 header does not have six fields");
  int family;
  if (fields[1] == "TCP4")
    family = AF_INET;
  else if (fields[1] == "TCP6")
    family = AF_INET6;
  else
    return Invalid("v1 protocol is not TCP4, TCP6 or UNKNOWN");
  Header& h = r.header;
  if (!ParseAddress(fields[2], family, &h.source) ||
      !ParseAddress(fields[3], family, &h.destination))
    return Invalid("v1 address does not match its family");
  if (!ParsePort(fields[4], &h.source_port) ||
      !ParsePort(fields[5], &h.destination_port))
    return Invalid("v1 port is not a number from 0 to 65535");
  r.status = Status::kDone;
  return r;
}

ParseResult ParseV1(std::string_view in) {
  std::size_t limit = in.size() < kMaxV1Line ? in.size() : kMaxV1Line;
  for (std::size_t i = 0; i < limit; i++) {
    auto c = static_cast<unsigned char>(in[i]);
    if (c == '\n') {
      if (i == 0 || in[i - 1] != '\r') return Invalid("v1 line ends in LF");
      return ParseV1Line(in.substr(0, i - 1), i + 1);
    }
    // Spec 2.1: a lone CR does not end the line; nor may it sit inside.
    if (c == '\r' && i + 1 < in.size() && in[i + 1] != '\n')
      return Invalid("v1 line holds a CR");
    if (c != '\r' && (c < 0x20 || c > 0x7e))
      return Invalid("v1 line holds a byte that is not printable ASCII");
  }
  if (in.size() >= kMaxV1Line) return Invalid("v1 line longer than 107 bytes");
  return NeedMore(1);
}

std::uint32_t Crc32c(std::string_view bytes) {
  std::uint32_t crc = 0xffffffffu;
  for (char ch : bytes) {
    crc ^= static_cast<unsigned char>(ch);
    for (int k = 0; k < 8; k++)
      crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
  }
  return ~crc;
}

std::uint16_t Be16(const char* p) {
  return static_cast<std::uint16_t>(static_cast<unsigned char>(p[0]) << 8 |
                                    static_cast<unsigned char>(p[1]));
}

// One level of TLVs over `tlvs`; calls visit(type, value) for each, and
// fails if one overruns or visit refuses.
template <typename Visit>
bool WalkTlvs(std::string_view tlvs, Visit visit) {
  while (!tlvs.empty()) {
    if (tlvs.size() < 3) return false;
    auto type = static_cast<unsigned char>(tlvs[0]);
    std::size_t len = Be16(tlvs.data() + 1);
    if (tlvs.size() - 3 < len) return false;
    if (!visit(type, tlvs.substr(3, len))) return false;
    tlvs.remove_prefix(3 + len);
  }
  return true;
}

bool ParseSsl(std::string_view value, Header* h) {
  if (value.size() < 5) return false;
  h->ssl = (static_cast<unsigned char>(value[0]) & kClientSsl) != 0;
  return WalkTlvs(value.substr(5), [h](unsigned char type, std::string_view v) {
    if (type == kSubSslVersion) h->ssl_version.assign(v.substr(0, 64));
    if (type == kSubSslCipher) h->ssl_cipher.assign(v.substr(0, 128));
    return true;
  });
}

// The TLVs after the addresses.  `whole` is the entire header, for the
// CRC32C check; `tlv_at` is where the TLVs start in it.
std::string_view ParseTlvs(std::string_view whole, std::size_t tlv_at,
                           Header* h) {
  bool seen_ssl = false, seen_crc = false, crc_ok = true;
  bool ok = WalkTlvs(whole.substr(tlv_at), [&](unsigned char type,
                                               std::string_view v) {
    if (type == kTlvSsl) {
      if (seen_ssl) return false;
      seen_ssl = true;
      return ParseSsl(v, h);
    }
    if (type == kTlvCrc32c) {
      if (seen_crc || v.size() != 4) return false;
      seen_crc = true;
      std::size_t at = static_cast<std::size_t>(v.data() - whole.data());
      std::string zeroed(whole);
      std::memset(zeroed.data() + at, 0, 4);
      std::uint32_t sent =
          static_cast<std::uint32_t>(Be16(v.data())) << 16 | Be16(v.data() + 2);
      crc_ok = Crc32c(zeroed) == sent;
    }
    return true;
  });
  if (!ok) return "v2 TLV overruns the header or repeats";
  if (!crc_ok) return "v2 CRC32C does not match";
  return {};
}

ParseResult ParseV2(std::string_view in) {
  if (in.size() < kV2Fixed) return NeedMore(kV2Fixed - in.size());
  auto ver_cmd = static_cast<unsigned char>(in[12]);
  auto fam = static_cast<unsigned char>(in[13]);
  std::size_t body = Be16(in.data() + 14);
  if ((ver_cmd >> 4) != 2) return Invalid("v2 version is not 2");
  unsigned command = ver_cmd & 0x0f;
  if (command > 1) return Invalid("v2 command is neither LOCAL nor PROXY");
  if ((fam >> 4) > 3 || (fam & 0x0f) > 2)
    return Invalid("v2 address family or protocol is unassigned");
  if (body > kMaxV2Body) return Invalid("v2 header longer than allowed");
  if (in.size() < kV2Fixed + body) return NeedMore(kV2Fixed + body - in.size());

  std::string_view whole = in.substr(0, kV2Fixed + body);
  ParseResult r;
  Header& h = r.header;
  h.version = 2;
  h.length = whole.size();
  r.status = Status::kDone;
  // Spec 2.2: for LOCAL the address block, family included, is ignored.
  if (command == 0 || fam == kUnspec) {
    h.local = true;
    return r;
  }
  std::size_t addr_len;
  int family;
  if (fam == kTcp4) {
    addr_len = 12;
    family = AF_INET;
  } else if (fam == kTcp6) {
    addr_len = 36;
    family = AF_INET6;
  } else {
    return Invalid("v2 client is not TCP over IPv4 or IPv6");
  }
  if (body < addr_len) return Invalid("v2 address block too short");
  std::size_t alen = family == AF_INET ? 4 : 16;
  const char* a = whole.data() + kV2Fixed;
  char buf[INET6_ADDRSTRLEN];
  if (!inet_ntop(family, a, buf, sizeof buf)) return Invalid("v2 address");
  h.source = buf;
  if (!inet_ntop(family, a + alen, buf, sizeof buf))
    return Invalid("v2 address");
  h.destination = buf;
  h.source_port = Be16(a + 2 * alen);
  h.destination_port = Be16(a + 2 * alen + 2);
  std::string_view err = ParseTlvs(whole, kV2Fixed + addr_len, &h);
  if (!err.empty()) return Invalid(err);
  return r;
}

}  // namespace

ParseResult ParseHeader(std::string_view in) {
  std::size_t n = in.size();
  if (n > 0 && in[0] == kV1Prefix[0]) {
    std::size_t k = n < kV1Prefix.size() ? n : kV1Prefix.size();
    if (in.substr(0, k) != kV1Prefix.substr(0, k))
      return Invalid("not a PROXY header");
    if (n < kV1Prefix.size() + 1) return NeedMore(kV1Prefix.size() + 1 - n);
    if (in[kV1Prefix.size()] != ' ') return Invalid("not a PROXY header");
    return ParseV1(in);
  }
  std::size_t k = n < kV2Signature.size() ? n : kV2Signature.size();
  if (in.substr(0, k) != kV2Signature.substr(0, k))
    return Invalid("not a PROXY header");
  if (n == 0) return NeedMore(kV1Prefix.size() + 1);
  if (n < kV2Signature.size()) return NeedMore(kV2Fixed - n);
  return ParseV2(in);
}

bool ReadHeader(int fd, int timeout_ms, Header* out, std::string_view* error) {
  using Clock = std::chrono::steady_clock;
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  std::string buf;
  for (;;) {
    ParseResult r = ParseHeader(buf);
    if (r.status == Status::kDone) {
      *out = std::move(r.header);
      return true;
    }
    if (r.status == Status::kInvalid) {
      *error = r.error;
      return false;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - Clock::now())
                    .count();
    pollfd p{fd, POLLIN, 0};
    int ready = left > 0 ? poll(&p, 1, static_cast<int>(left)) : 0;
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) {
      *error = "no PROXY header in time";
      return false;
    }
    // A v1 line may be read up to its LF and no further: look first.
    std::size_t want = r.need;
    bool v1 = !buf.empty() && buf[0] == 'P';
    char chunk[512];
    if (v1) {
      std::size_t room = kMaxV1Line - buf.size();
      ssize_t seen = recv(fd, chunk, room, MSG_PEEK | MSG_DONTWAIT);
      if (seen > 0) {
        const void* lf = std::memchr(chunk, '\n', static_cast<size_t>(seen));
        want = lf ? static_cast<std::size_t>(static_cast<const char*>(lf) -
                                             chunk) +
                        1
                  : static_cast<std::size_t>(seen);
      }
    }
    if (want > sizeof chunk) want = sizeof chunk;
    ssize_t got = recv(fd, chunk, want, MSG_DONTWAIT);
    if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (got <= 0) {
      *error = "connection closed inside the PROXY header";
      return false;
    }
    buf.append(chunk, static_cast<std::size_t>(got));
  }
}

}  // namespace popguard::proxy
