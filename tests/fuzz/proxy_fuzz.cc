// Fuzz target: the PROXY protocol reader (common/proxy.h), which the
// monitor runs as root on the first bytes of a connection.
//
// Beyond ParseHeader's own contract (common/proxy_fuzz.cc checks that for
// one call), this checks that the parser and the socket reader agree with
// each other however the bytes arrive:
// - a header found in the input is found the same in the input cut right
//   after it, and every shorter cut is a valid beginning that asks for no
//   more bytes than the header still lacks;
// - ReadHeader, given the input on a socket whose peer then closes, comes
//   to the same verdict as ParseHeader on the whole input, and leaves
//   every byte after the header unread (those are the client's first
//   command).
#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/proxy.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using popguard::fuzz::Check;
using namespace popguard::proxy;

bool SameHeader(const Header& a, const Header& b) {
  return a.version == b.version && a.local == b.local && a.source == b.source &&
         a.source_port == b.source_port && a.destination == b.destination &&
         a.destination_port == b.destination_port && a.ssl == b.ssl &&
         a.ssl_version == b.ssl_version && a.ssl_cipher == b.ssl_cipher &&
         a.length == b.length;
}

bool Numeric(const std::string& address) {
  unsigned char raw[16];
  return inet_pton(AF_INET, address.c_str(), raw) == 1 ||
         inet_pton(AF_INET6, address.c_str(), raw) == 1;
}

void CheckDone(std::string_view in, const Header& h) {
  Check(h.length >= 1 && h.length <= in.size(), "the header lies in the input");
  Check(h.version == 1 || h.version == 2, "the version is 1 or 2");
  Check(h.version == 2 || h.length <= kMaxV1Line, "a v1 line is bounded");
  Check(h.length <= kV2Fixed + kMaxV2Body, "a v2 header is bounded");
  Check(h.local == h.source.empty(), "only a local header has no source");
  if (!h.local)
    Check(Numeric(h.source) && Numeric(h.destination), "addresses are numeric");
  Check(h.version == 2 || !h.ssl, "only v2 can say TLS");

  ParseResult exact = ParseHeader(in.substr(0, h.length));
  Check(exact.status == Status::kDone && SameHeader(exact.header, h),
        "the header alone parses the same");

  // Every cut would cost length^2 parses; these reach the edges.
  std::size_t cuts[] = {0, 1, 5, 6, 12, 15, 16, h.length / 2, h.length - 1};
  for (std::size_t cut : cuts) {
    if (cut >= h.length) continue;
    ParseResult part = ParseHeader(in.substr(0, cut));
    Check(part.status == Status::kNeedMore,
          "a cut inside a valid header is a valid beginning");
    Check(part.need >= 1 && cut + part.need <= h.length,
          "need never asks for bytes beyond the header");
  }
}

// Runs ReadHeader on a socket holding `in` whose peer has closed, and
// returns the bytes it left unread.
std::string ReadFromSocket(std::string_view in, bool* ok, Header* h) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
    std::abort();
  Check(write(fds[0], in.data(), in.size()) == static_cast<ssize_t>(in.size()),
        "the socket takes the whole input");
  close(fds[0]);
  std::string_view error;
  *ok = ReadHeader(fds[1], 1000, h, &error);
  if (!*ok) Check(!error.empty(), "a failure has a reason");
  std::string rest;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[1], buf, sizeof buf)) > 0) rest.append(buf, n);
  close(fds[1]);
  return rest;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  ParseResult r = ParseHeader(in);
  switch (r.status) {
    case Status::kDone: CheckDone(in, r.header); break;
    case Status::kNeedMore:
      Check(r.need >= 1 && size + r.need <= kV2Fixed + kMaxV2Body,
            "need stays within the largest header");
      break;
    case Status::kInvalid: Check(!r.error.empty(), "kInvalid says why"); break;
  }

  bool ok = false;
  Header h;
  std::string rest = ReadFromSocket(in, &ok, &h);
  Check(ok == (r.status == Status::kDone),
        "ReadHeader and ParseHeader agree on the verdict");
  if (ok) {
    Check(SameHeader(h, r.header), "ReadHeader returns the parsed header");
    Check(rest == in.substr(h.length),
          "ReadHeader reads no byte beyond the header");
  }
  return 0;
}
