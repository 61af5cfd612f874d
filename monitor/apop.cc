#include "monitor/apop.h"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/time.h>
#include <unistd.h>

#include <array>
#include <cstdint>

namespace popguard::monitor {
namespace {

constexpr std::size_t kChallengeRandomBytes = 16;  // 128 bits
constexpr std::size_t kMd5Hex = 32;
constexpr char kHexDigits[] = "0123456789abcdef";

bool IsChallengeChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '.' || c == '-';
}

std::string ChallengeHost(std::string_view host) {
  std::string out;
  for (char c : host) {
    if (out.size() == kMaxChallengeHost) break;
    if (IsChallengeChar(c)) out.push_back(c);
  }
  if (out.empty()) out = "localhost";
  return out;
}

// Lower-cases ASCII hex letters without a branch on the value, so the
// client's digest is normalised in time that does not depend on it.
char LowerAscii(char c) {
  auto u = static_cast<unsigned char>(c);
  unsigned is_upper =
      static_cast<unsigned>(static_cast<unsigned>(u - 'A') <= 'Z' - 'A');
  return static_cast<char>(u | (is_upper << 5));
}

}  // namespace

std::string MakeChallenge(std::string_view host) {
  std::array<unsigned char, kChallengeRandomBytes> random{};
  if (RAND_bytes(random.data(), random.size()) != 1) return {};

  std::string hex;
  hex.reserve(random.size() * 2);
  for (unsigned char b : random) {
    hex.push_back(kHexDigits[b >> 4]);
    hex.push_back(kHexDigits[b & 0xf]);
  }

  timeval now{};
  gettimeofday(&now, nullptr);
  std::uint64_t usec = static_cast<std::uint64_t>(now.tv_sec) * 1000000u +
                       static_cast<std::uint64_t>(now.tv_usec);
  return fmt::format("<{}.{}.{}@{}>", static_cast<long>(getpid()), usec, hex,
                     ChallengeHost(host));
}

bool CheckApopDigest(std::string_view challenge, std::string_view secret,
                     std::string_view digest) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int md_len = 0;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool hashed =
      ctx != nullptr && EVP_DigestInit_ex(ctx, EVP_md5(), nullptr) == 1 &&
      EVP_DigestUpdate(ctx, challenge.data(), challenge.size()) == 1 &&
      EVP_DigestUpdate(ctx, secret.data(), secret.size()) == 1 &&
      EVP_DigestFinal_ex(ctx, md.data(), &md_len) == 1 && md_len * 2 == kMd5Hex;
  EVP_MD_CTX_free(ctx);

  std::array<char, kMd5Hex> expected{};
  for (std::size_t i = 0; i < kMd5Hex / 2; ++i) {
    expected[2 * i] = kHexDigits[md[i] >> 4];
    expected[2 * i + 1] = kHexDigits[md[i] & 0xf];
  }

  // A digest of the wrong length is still compared (as zeros), so that the
  // work done does not depend on what the client sent.
  bool right_length = digest.size() == kMd5Hex;
  std::array<char, kMd5Hex> given{};
  if (right_length) {
    for (std::size_t i = 0; i < kMd5Hex; ++i) given[i] = LowerAscii(digest[i]);
  }
  bool same = CRYPTO_memcmp(expected.data(), given.data(), kMd5Hex) == 0;

  OPENSSL_cleanse(md.data(), md.size());
  OPENSSL_cleanse(expected.data(), expected.size());
  return hashed && right_length && same;
}

}  // namespace popguard::monitor
