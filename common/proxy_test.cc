#include "common/proxy.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <string>
#include <thread>

namespace popguard::proxy {
namespace {

using namespace std::string_literals;

const std::string kSig("\r\n\r\n\0\r\nQUIT\n", 12);

std::string Be16(unsigned v) {
  return {static_cast<char>(v >> 8), static_cast<char>(v & 0xff)};
}

std::string Tlv(unsigned char type, const std::string& value) {
  return std::string(1, static_cast<char>(type)) + Be16(value.size()) + value;
}

// A v2 header: version/command byte, family byte, then the body.
std::string V2(unsigned char ver_cmd, unsigned char fam,
               const std::string& body) {
  return kSig + static_cast<char>(ver_cmd) + static_cast<char>(fam) +
         Be16(body.size()) + body;
}

// 192.0.2.1:56324 -> 198.51.100.7:110
const std::string kTcp4Addrs =
    "\xc0\x00\x02\x01"
    "\xc6\x33\x64\x07"
    "\xdc\x04"
    "\x00\x6e"s;

std::string Tcp6Addrs() {
  std::string src(16, '\0'), dst(16, '\0');
  src[0] = '\x20';
  src[1] = '\x01';
  src[2] = '\x0d';
  src[3] = '\xb8';
  src[15] = '\x05';
  dst[15] = '\x01';
  return src + dst + Be16(40000) + Be16(995);
}

Header Done(const std::string& in) {
  ParseResult r = ParseHeader(in);
  EXPECT_EQ(r.status, Status::kDone) << r.error;
  return r.header;
}

std::string_view InvalidBecause(const std::string& in) {
  ParseResult r = ParseHeader(in);
  EXPECT_EQ(r.status, Status::kInvalid);
  return r.error;
}

// --- version 1 ---

TEST(ProxyV1Test, ParsesTcp4) {
  Header h = Done("PROXY TCP4 192.0.2.1 198.51.100.7 56324 110\r\nCAPA\r\n");
  EXPECT_EQ(h.version, 1);
  EXPECT_FALSE(h.local);
  EXPECT_EQ(h.source, "192.0.2.1");
  EXPECT_EQ(h.source_port, 56324);
  EXPECT_EQ(h.destination, "198.51.100.7");
  EXPECT_EQ(h.destination_port, 110);
  EXPECT_EQ(h.length, 45u);
  EXPECT_FALSE(h.ssl);
}

TEST(ProxyV1Test, ParsesTcp6InCanonicalForm) {
  Header h = Done("PROXY TCP6 2001:DB8:0:0::5 ::1 0 65535\r\n");
  EXPECT_EQ(h.source, "2001:db8::5");
  EXPECT_EQ(h.destination, "::1");
  EXPECT_EQ(h.source_port, 0);
  EXPECT_EQ(h.destination_port, 65535);
}

TEST(ProxyV1Test, UnknownMeansTheRealPeerWhateverFollows) {
  EXPECT_TRUE(Done("PROXY UNKNOWN\r\n").local);
  Header h = Done("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n");
  EXPECT_TRUE(h.local);
  EXPECT_EQ(h.source, "");
}

TEST(ProxyV1Test, AcceptsTheLongestLine) {
  std::string ip(39, 'f');
  for (std::size_t i = 4; i < ip.size(); i += 5) ip[i] = ':';
  std::string line = "PROXY UNKNOWN " + ip + " " + ip + " 65535 65535\r\n";
  ASSERT_EQ(line.size(), 107u);
  EXPECT_TRUE(Done(line).local);
}

TEST(ProxyV1Test, AsksForMoreUntilTheLineEnds) {
  std::string line = "PROXY TCP4 192.0.2.1 198.51.100.7 56324 110\r\n";
  for (std::size_t n = 0; n < line.size(); n++) {
    ParseResult r = ParseHeader(line.substr(0, n));
    EXPECT_EQ(r.status, Status::kNeedMore) << n;
    EXPECT_GE(r.need, 1u);
    EXPECT_LE(n + r.need, line.size()) << n;
  }
}

TEST(ProxyV1Test, RejectsMalformedLines) {
  const char* bad[] = {
      "PROXY TCP4 192.0.2.1 198.51.100.7 56324 110\n",      // LF only
      "PROXY TCP4 192.0.2.1 198.51.100.7 56324 110\r\r\n",  // CR inside
      "PROXY TCP4 192.0.2.1 198.51.100.7 56324\r\n",        // five fields
      "PROXY TCP4 192.0.2.1 198.51.100.7 56324 110 1\r\n",  // seven
      "PROXY TCP4  192.0.2.1 198.51.100.7 56324 110\r\n",   // two spaces
      "PROXY TCP4 192.0.2.1 198.51.100.7 56324 110 \r\n",   // trailing
      "PROXY TCP5 192.0.2.1 198.51.100.7 56324 110\r\n",    // protocol
      "PROXY tcp4 192.0.2.1 198.51.100.7 56324 110\r\n",    // case
      "PROXY TCP4 ::1 198.51.100.7 56324 110\r\n",          // family
      "PROXY TCP6 192.0.2.1 ::1 56324 110\r\n",             // family
      "PROXY TCP4 192.0.2.01 198.51.100.7 56324 110\r\n",   // octal-ish
      "PROXY TCP4 192.0.2 198.51.100.7 56324 110\r\n",      // short
      "PROXY TCP4 192.0.2.1 198.51.100.7 065535 110\r\n",   // leading 0
      "PROXY TCP4 192.0.2.1 198.51.100.7 65536 110\r\n",    // range
      "PROXY TCP4 192.0.2.1 198.51.100.7 -1 110\r\n",       // sign
      "PROXY TCP4 192.0.2.1 198.51.100.7 +1 110\r\n",       // sign
      "PROXY TCP4 192.0.2.1 198.51.100.7 1a 110\r\n",       // digits
      "PROXY TCP4 192.0.2.1 198.51.100.7  110\r\n",         // empty port
      "PROXY \r\n",                                         // nothing
      "PROXY\r\n",                                          // no space
      "PROXYTCP4 192.0.2.1 198.51.100.7 1 2\r\n",           // no space
      "PROXY UNKNOWNX\r\n",                                 // protocol
      "PROXY TCP4 192.0.2.1\t198.51.100.7 1 2\r\n",         // tab
      "proxy TCP4 192.0.2.1 198.51.100.7 1 2\r\n",          // case
      "USER alice\r\n",                                     // no header
      "\x16\x03\x01\x02\x00",                               // TLS hello
  };
  for (const char* line : bad) {
    SCOPED_TRACE(line);
    InvalidBecause(line);
  }
}

TEST(ProxyV1Test, RejectsHighBytes) {
  InvalidBecause("PROXY TCP4 192.0.2.1 198.51.100.7 1 2\xff\r\n");
  InvalidBecause("PROXY TCP4 192.0.2.1 198.51.100.7 1 2\0\r\n"s);
}

TEST(ProxyV1Test, RejectsALineWithoutCrlfIn107Bytes) {
  std::string line = "PROXY UNKNOWN " + std::string(93, 'a');
  ASSERT_EQ(line.size(), 107u);
  EXPECT_EQ(InvalidBecause(line), "v1 line longer than 107 bytes");
  EXPECT_EQ(ParseHeader(line.substr(0, 106)).status, Status::kNeedMore);
}

// --- version 2 ---

TEST(ProxyV2Test, ParsesTcp4) {
  Header h = Done(V2(0x21, 0x11, kTcp4Addrs) + "CAPA\r\n");
  EXPECT_EQ(h.version, 2);
  EXPECT_FALSE(h.local);
  EXPECT_EQ(h.source, "192.0.2.1");
  EXPECT_EQ(h.source_port, 56324);
  EXPECT_EQ(h.destination, "198.51.100.7");
  EXPECT_EQ(h.destination_port, 110);
  EXPECT_EQ(h.length, 28u);
}

TEST(ProxyV2Test, ParsesTcp6) {
  Header h = Done(V2(0x21, 0x21, Tcp6Addrs()));
  EXPECT_EQ(h.source, "2001:db8::5");
  EXPECT_EQ(h.destination, "::1");
  EXPECT_EQ(h.source_port, 40000);
  EXPECT_EQ(h.destination_port, 995);
}

TEST(ProxyV2Test, LocalMeansTheRealPeerAndSkipsTheBlock) {
  Header h = Done(V2(0x20, 0x00, ""));
  EXPECT_TRUE(h.local);
  EXPECT_EQ(h.length, 16u);
  // Spec 2.2: for LOCAL the family and address block are ignored.
  h = Done(V2(0x20, 0x11, kTcp4Addrs + "junk"));
  EXPECT_TRUE(h.local);
  EXPECT_EQ(h.source, "");
  EXPECT_EQ(h.length, 16u + 16u);
}

TEST(ProxyV2Test, UnspecifiedFamilyMeansTheRealPeer) {
  EXPECT_TRUE(Done(V2(0x21, 0x00, "whatever")).local);
}

TEST(ProxyV2Test, ReadsTheSslTlvWithVersionAndCipher) {
  std::string ssl = "\x01"s + "\x00\x00\x00\x00"s + Tlv(0x21, "TLSv1.3") +
                    Tlv(0x23, "TLS_AES_256_GCM_SHA384");
  Header h = Done(V2(0x21, 0x11, kTcp4Addrs + Tlv(0x20, ssl)));
  EXPECT_TRUE(h.ssl);
  EXPECT_EQ(h.ssl_version, "TLSv1.3");
  EXPECT_EQ(h.ssl_cipher, "TLS_AES_256_GCM_SHA384");
}

TEST(ProxyV2Test, SslTlvWithoutTheClientBitIsNotTls) {
  std::string ssl = "\x06"s + "\x00\x00\x00\x00"s;
  EXPECT_FALSE(Done(V2(0x21, 0x11, kTcp4Addrs + Tlv(0x20, ssl))).ssl);
}

TEST(ProxyV2Test, SkipsOtherTlvs) {
  std::string tlvs = Tlv(0x01, "pop3") + Tlv(0x02, "pop.example.org") +
                     Tlv(0x04, "") + Tlv(0x05, std::string(128, 'u')) +
                     Tlv(0xe0, "custom");
  Header h = Done(V2(0x21, 0x11, kTcp4Addrs + tlvs));
  EXPECT_EQ(h.source, "192.0.2.1");
  EXPECT_FALSE(h.ssl);
}

// CRC32C (Castagnoli) of the header with the checksum field zeroed,
// computed here the slow way to check the parser's.
std::uint32_t Crc32cReference(const std::string& s) {
  std::uint32_t crc = ~0u;
  for (unsigned char c : s) {
    for (int bit = 0; bit < 8; bit++) {
      bool mix = ((crc ^ (c >> bit)) & 1) != 0;
      crc >>= 1;
      if (mix) crc ^= 0x82f63b78u;
    }
  }
  return ~crc;
}

std::string WithCrc(bool correct) {
  std::string h = V2(0x21, 0x11, kTcp4Addrs + Tlv(0x03, std::string(4, '\0')));
  std::uint32_t crc = Crc32cReference(h) ^ (correct ? 0u : 1u);
  std::size_t at = h.size() - 4;
  for (int i = 0; i < 4; i++)
    h[at + i] = static_cast<char>(crc >> (24 - 8 * i));
  return h;
}

TEST(ProxyV2Test, AcceptsAMatchingCrc32c) {
  EXPECT_EQ(Done(WithCrc(true)).source, "192.0.2.1");
}

TEST(ProxyV2Test, RejectsAWrongCrc32c) {
  EXPECT_EQ(InvalidBecause(WithCrc(false)), "v2 CRC32C does not match");
}

TEST(ProxyV2Test, Crc32cMatchesTheKnownCheckValue) {
  // RFC 3720 B.4: CRC32C of 32 zero bytes.
  EXPECT_EQ(Crc32cReference(std::string(32, '\0')), 0x8a9136aau);
}

TEST(ProxyV2Test, AsksForExactlyWhatIsMissing) {
  std::string h = V2(0x21, 0x11, kTcp4Addrs);
  for (std::size_t n = 0; n < h.size(); n++) {
    ParseResult r = ParseHeader(h.substr(0, n));
    ASSERT_EQ(r.status, Status::kNeedMore) << n;
    EXPECT_LE(n + r.need, h.size()) << n;
    if (n >= 16) {
      EXPECT_EQ(n + r.need, h.size()) << n;
    }
  }
}

TEST(ProxyV2Test, RejectsMalformedHeaders) {
  struct Case {
    std::string bytes;
    const char* why;
  };
  std::string sig_typo = kSig;
  sig_typo[11] = 'X';
  const Case cases[] = {
      {sig_typo + "\x21\x11" + Be16(12) + kTcp4Addrs, "signature"},
      {V2(0x11, 0x11, kTcp4Addrs), "version 1 in v2 form"},
      {V2(0x31, 0x11, kTcp4Addrs), "version 3"},
      {V2(0x22, 0x11, kTcp4Addrs), "command 2"},
      {V2(0x2f, 0x11, kTcp4Addrs), "command 15"},
      {V2(0x21, 0x41, kTcp4Addrs), "family 4"},
      {V2(0x21, 0x13, kTcp4Addrs), "protocol 3"},
      {V2(0x21, 0x12, kTcp4Addrs), "UDP over IPv4"},
      {V2(0x21, 0x22, Tcp6Addrs()), "UDP over IPv6"},
      {V2(0x21, 0x31, std::string(216, 'a')), "UNIX stream"},
      {V2(0x21, 0x32, std::string(216, 'a')), "UNIX datagram"},
      {V2(0x21, 0x10, kTcp4Addrs), "IPv4 without protocol"},
      {V2(0x21, 0x11, kTcp4Addrs.substr(0, 11)), "short IPv4 block"},
      {V2(0x21, 0x21, Tcp6Addrs().substr(0, 35)), "short IPv6 block"},
      {V2(0x21, 0x11, kTcp4Addrs + "\x20"), "TLV of one byte"},
      {V2(0x21, 0x11, kTcp4Addrs + "\x20\x00"), "TLV of two bytes"},
      {V2(0x21, 0x11, kTcp4Addrs + "\x04\x00\x05" + "abcd"), "TLV overrun"},
      {V2(0x21, 0x11, kTcp4Addrs + Tlv(0x20, "\x01\x00\x00\x00"s)),
       "SSL TLV shorter than 5"},
      {V2(0x21, 0x11,
          kTcp4Addrs + Tlv(0x20, "\x01\x00\x00\x00\x00\x21\x00\x09v1.3"s)),
       "SSL sub-TLV overrun"},
      {V2(0x21, 0x11,
          kTcp4Addrs + Tlv(0x20, "\x01\x00\x00\x00\x00"s) +
              Tlv(0x20, "\x01\x00\x00\x00\x00"s)),
       "SSL TLV twice"},
      {V2(0x21, 0x11, kTcp4Addrs + Tlv(0x03, "abc")), "CRC32C of 3 bytes"},
      {V2(0x21, 0x11, kTcp4Addrs + std::string(kMaxV2Body, '\x04')),
       "too long"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.why);
    InvalidBecause(c.bytes);
  }
}

TEST(ProxyV2Test, RejectsTooLongBeforeReadingIt) {
  std::string head = kSig + "\x21\x11" + Be16(kMaxV2Body + 1);
  EXPECT_EQ(InvalidBecause(head), "v2 header longer than allowed");
}

TEST(ProxyV2Test, AcceptsTheLongestBody) {
  std::string pad = Tlv(0x04, std::string(kMaxV2Body - 12 - 3, 'p'));
  EXPECT_EQ(Done(V2(0x21, 0x11, kTcp4Addrs + pad)).length, 16 + kMaxV2Body);
}

// Whatever the bytes, the parser ends in one of its three states, never
// claims more bytes than it was given, and never asks for more than the
// longest header.  The same check, run by libFuzzer, is
// tests/fuzz/proxy_fuzz.cc.
TEST(ProxyFuzzTest, RandomMutationsKeepTheInvariants) {
  std::mt19937 rng(20240601);
  const std::string seeds[] = {
      "PROXY TCP4 192.0.2.1 198.51.100.7 56324 110\r\n",
      "PROXY TCP6 2001:db8::5 ::1 1 2\r\n",
      "PROXY UNKNOWN\r\n",
      V2(0x21, 0x11, kTcp4Addrs),
      V2(0x21, 0x21, Tcp6Addrs()),
      V2(0x20, 0x00, ""),
      V2(0x21, 0x11,
         kTcp4Addrs + Tlv(0x20, "\x01\x00\x00\x00\x00"s + Tlv(0x21, "TLS"))),
  };
  for (int round = 0; round < 200000; round++) {
    std::string s = seeds[rng() % std::size(seeds)];
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !s.empty(); e++) {
      std::size_t at = rng() % s.size();
      switch (rng() % 4) {
        case 0: s[at] = static_cast<char>(rng()); break;
        case 1: s.erase(at, 1 + rng() % 3); break;
        case 2: s.insert(at, 1, static_cast<char>(rng())); break;
        case 3: s.resize(at); break;
      }
    }
    ParseResult r = ParseHeader(s);
    switch (r.status) {
      case Status::kDone:
        ASSERT_LE(r.header.length, s.size());
        ASSERT_TRUE(r.header.version == 1 || r.header.version == 2);
        break;
      case Status::kNeedMore:
        ASSERT_GE(r.need, 1u);
        ASSERT_LE(s.size() + r.need, kV2Fixed + kMaxV2Body);
        break;
      case Status::kInvalid: ASSERT_FALSE(r.error.empty()); break;
    }
  }
}

// --- reading from a socket ---

class ReadHeaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv_), 0);
  }
  void TearDown() override {
    close(sv_[0]);
    if (sv_[1] >= 0) close(sv_[1]);
  }
  void Send(const std::string& s) {
    ASSERT_EQ(write(sv_[1], s.data(), s.size()),
              static_cast<ssize_t>(s.size()));
  }
  std::string Rest() {
    char buf[256];
    ssize_t n = recv(sv_[0], buf, sizeof buf, MSG_DONTWAIT);
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "";
  }
  int sv_[2] = {-1, -1};
};

TEST_F(ReadHeaderTest, ReadsV1AndNotAByteMore) {
  Send("PROXY TCP4 192.0.2.1 198.51.100.7 56324 110\r\nCAPA\r\n");
  Header h;
  std::string_view err;
  ASSERT_TRUE(ReadHeader(sv_[0], 1000, &h, &err)) << err;
  EXPECT_EQ(h.source, "192.0.2.1");
  EXPECT_EQ(Rest(), "CAPA\r\n");
}

TEST_F(ReadHeaderTest, ReadsV2AndNotAByteMore) {
  Send(V2(0x21, 0x11, kTcp4Addrs) + "CAPA\r\n");
  Header h;
  std::string_view err;
  ASSERT_TRUE(ReadHeader(sv_[0], 1000, &h, &err)) << err;
  EXPECT_EQ(h.source_port, 56324);
  EXPECT_EQ(Rest(), "CAPA\r\n");
}

TEST_F(ReadHeaderTest, ReadsAHeaderThatArrivesByteByByte) {
  std::string line = "PROXY TCP6 2001:db8::5 ::1 1 2\r\n";
  std::thread writer([&] {
    for (char c : line) {
      ASSERT_EQ(write(sv_[1], &c, 1), 1);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  Header h;
  std::string_view err;
  bool ok = ReadHeader(sv_[0], 5000, &h, &err);
  writer.join();
  ASSERT_TRUE(ok) << err;
  EXPECT_EQ(h.source, "2001:db8::5");
}

TEST_F(ReadHeaderTest, GivesUpOnASilentPeer) {
  Send("PROXY TCP4 192.0.2.1");
  Header h;
  std::string_view err;
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(ReadHeader(sv_[0], 200, &h, &err));
  EXPECT_EQ(err, "no PROXY header in time");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

TEST_F(ReadHeaderTest, FailsWhenThePeerClosesInsideTheHeader) {
  Send(V2(0x21, 0x11, kTcp4Addrs).substr(0, 20));
  close(sv_[1]);
  sv_[1] = -1;
  Header h;
  std::string_view err;
  EXPECT_FALSE(ReadHeader(sv_[0], 1000, &h, &err));
  EXPECT_EQ(err, "connection closed inside the PROXY header");
}

TEST_F(ReadHeaderTest, RejectsAClientThatSpeaksFirstWithoutAHeader) {
  Send("CAPA\r\n");
  Header h;
  std::string_view err;
  EXPECT_FALSE(ReadHeader(sv_[0], 1000, &h, &err));
  EXPECT_EQ(err, "not a PROXY header");
}

}  // namespace
}  // namespace popguard::proxy
