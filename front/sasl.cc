#include "front/sasl.h"

#include <openssl/evp.h>

#include "common/secure.h"

namespace popguard::front {
namespace {

// RFC 4616 section 2: each of authcid and passwd is 1 to 255 octets, and
// so at most is authzid.
constexpr std::size_t kMaxField = 255;

bool IsBase64Char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '+' || c == '/';
}

}  // namespace

std::optional<std::string> DecodeBase64(std::string_view in) {
  if (in.size() % 4 != 0) return std::nullopt;
  std::size_t pad = 0;
  while (pad < 2 && pad < in.size() && in[in.size() - 1 - pad] == '=') pad++;
  for (std::size_t i = 0; i < in.size() - pad; i++)
    if (!IsBase64Char(in[i])) return std::nullopt;

  // EVP_DecodeBlock checks the alphabet too, but counts padding as zero
  // bytes; the length is corrected from `pad` below.
  std::string out(in.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  if (n < 0) {
    Wipe(out);
    return std::nullopt;
  }
  out.resize(static_cast<std::size_t>(n) - pad);
  return out;
}

std::expected<PlainCredentials, PlainError> DecodePlain(
    std::string_view base64) {
  std::optional<std::string> raw = DecodeBase64(base64);
  if (!raw) return std::unexpected(PlainError::kBadBase64);

  PlainCredentials c;
  std::size_t first = raw->find('\0');
  std::size_t second =
      first == std::string::npos ? first : raw->find('\0', first + 1);
  bool ok = second != std::string::npos &&
            raw->find('\0', second + 1) == std::string::npos;
  if (ok) {
    c.authzid = raw->substr(0, first);
    c.authcid = raw->substr(first + 1, second - first - 1);
    c.password = raw->substr(second + 1);
    ok = !c.authcid.empty() && !c.password.empty() &&
         c.authzid.size() <= kMaxField && c.authcid.size() <= kMaxField &&
         c.password.size() <= kMaxField;
  }
  Wipe(*raw);
  if (!ok) {
    Wipe(c.password);
    return std::unexpected(PlainError::kBadFormat);
  }
  return c;
}

}  // namespace popguard::front
