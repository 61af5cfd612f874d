#include "monitor/apop.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <algorithm>
#include <set>
#include <string>

namespace popguard::monitor {
namespace {

// RFC 1939 section 7.
constexpr char kRfcChallenge[] = "<1896.697170952@dbc.mtview.ca.us>";
constexpr char kRfcSecret[] = "tanstaaf";
constexpr char kRfcDigest[] = "c4c9334bac560ecc979e58001b3e22fb";

std::string Md5Hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  std::size_t len = 0;
  EXPECT_EQ(
      EVP_Q_digest(nullptr, "MD5", nullptr, data.data(), data.size(), md, &len),
      1);
  std::string hex;
  for (std::size_t i = 0; i < len; ++i) hex += fmt::format("{:02x}", md[i]);
  return hex;
}

bool OnlyChallengeChars(std::string_view s) {
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

TEST(CheckApopDigest, AcceptsRfc1939Example) {
  EXPECT_TRUE(CheckApopDigest(kRfcChallenge, kRfcSecret, kRfcDigest));
}

TEST(CheckApopDigest, AcceptsUpperCaseHex) {
  EXPECT_TRUE(CheckApopDigest(kRfcChallenge, kRfcSecret,
                              "C4C9334BAC560ECC979E58001B3E22FB"));
}

TEST(CheckApopDigest, RejectsWrongSecret) {
  EXPECT_FALSE(CheckApopDigest(kRfcChallenge, "tanstaaF", kRfcDigest));
}

TEST(CheckApopDigest, RejectsOtherChallenge) {
  EXPECT_FALSE(CheckApopDigest("<1896.697170953@dbc.mtview.ca.us>", kRfcSecret,
                               kRfcDigest));
}

TEST(CheckApopDigest, RejectsOneDigitChanged) {
  EXPECT_FALSE(CheckApopDigest(kRfcChallenge, kRfcSecret,
                               "c4c9334bac560ecc979e58001b3e22fc"));
}

TEST(CheckApopDigest, RejectsWrongLength) {
  EXPECT_FALSE(CheckApopDigest(kRfcChallenge, kRfcSecret, ""));
  EXPECT_FALSE(CheckApopDigest(kRfcChallenge, kRfcSecret,
                               "c4c9334bac560ecc979e58001b3e22f"));
  EXPECT_FALSE(CheckApopDigest(kRfcChallenge, kRfcSecret,
                               "c4c9334bac560ecc979e58001b3e22fb0"));
}

TEST(CheckApopDigest, RejectsNonHexThatLowerCasesToDigest) {
  // '@' | 0x20 is '`', so no punctuation can pass as a hex digit.
  EXPECT_FALSE(CheckApopDigest(kRfcChallenge, kRfcSecret,
                               "c4c9334bac560ecc979e58001b3e22f@"));
}

TEST(CheckApopDigest, RejectsEmptySecretAgainstRealDigest) {
  EXPECT_FALSE(CheckApopDigest(kRfcChallenge, "", kRfcDigest));
}

TEST(MakeChallenge, HasBracketsAndHost) {
  std::string c = MakeChallenge("mail.example.org");
  ASSERT_GE(c.size(), 3u);
  EXPECT_EQ(c.front(), '<');
  EXPECT_TRUE(c.ends_with("@mail.example.org>"));
}

TEST(MakeChallenge, UsesOnlyLettersDigitsDotAndDash) {
  std::string c = MakeChallenge("mail.example.org");
  std::size_t at = c.find('@');
  ASSERT_NE(at, std::string::npos);
  EXPECT_TRUE(OnlyChallengeChars(c.substr(1, at - 1)));
  EXPECT_TRUE(OnlyChallengeChars(c.substr(at + 1, c.size() - at - 2)));
}

TEST(MakeChallenge, CarriesAtLeast128RandomBits) {
  std::string c = MakeChallenge("h");
  std::size_t last_dot = c.rfind('.', c.find('@'));
  ASSERT_NE(last_dot, std::string::npos);
  EXPECT_EQ(c.find('@') - last_dot - 1, 32u);  // 32 hex digits
}

TEST(MakeChallenge, DiffersEveryTime) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) seen.insert(MakeChallenge("h"));
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(MakeChallenge, DropsUnsafeHostCharacters) {
  std::string c = MakeChallenge("ma=il+ex@mple>.org\r\n");
  EXPECT_TRUE(c.ends_with("@mailexmple.org>"));
  EXPECT_EQ(std::count(c.begin(), c.end(), '@'), 1);
  EXPECT_EQ(std::count(c.begin(), c.end(), '>'), 1);
}

TEST(MakeChallenge, FallsBackToLocalhostForEmptyHost) {
  EXPECT_TRUE(MakeChallenge("").ends_with("@localhost>"));
  EXPECT_TRUE(MakeChallenge("==").ends_with("@localhost>"));
}

TEST(MakeChallenge, CutsLongHost) {
  std::string c = MakeChallenge(std::string(1000, 'a'));
  std::size_t at = c.find('@');
  EXPECT_EQ(c.size() - at - 2, kMaxChallengeHost);
}

TEST(MakeChallenge, DigestForOneChallengeFailsOnTheNext) {
  std::string first = MakeChallenge("h");
  std::string second = MakeChallenge("h");
  std::string digest = Md5Hex(first + kRfcSecret);
  EXPECT_TRUE(CheckApopDigest(first, kRfcSecret, digest));
  EXPECT_FALSE(CheckApopDigest(second, kRfcSecret, digest));
}

}  // namespace
}  // namespace popguard::monitor
