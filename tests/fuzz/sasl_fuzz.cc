// Fuzz target: SASL PLAIN decoding in the front (front/sasl.h), which
// turns a client's AUTH PLAIN response into a user and a password.
//
// DecodeBase64 is checked against a small reference decoder written from
// RFC 4648 section 4 (length a multiple of four, the 64-letter alphabet,
// one or two '=' only at the end; the unused low bits of the last letter
// are ignored, as the header's contract allows).  DecodePlain must accept
// exactly the decodings that split into authzid NUL authcid NUL password
// within RFC 4616's bounds, and return those fields.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "front/sasl.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using popguard::fuzz::Check;

int Sextet(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

std::optional<std::string> ReferenceBase64(std::string_view in) {
  if (in.size() % 4 != 0) return std::nullopt;
  std::size_t pad = 0;
  while (pad < 2 && pad < in.size() && in[in.size() - 1 - pad] == '=') pad++;
  std::string out;
  std::uint32_t bits = 0;
  int nbits = 0;
  for (std::size_t i = 0; i < in.size() - pad; i++) {
    int v = Sextet(in[i]);
    if (v < 0) return std::nullopt;
    bits = (bits << 6) | static_cast<std::uint32_t>(v);
    nbits += 6;
    if (nbits >= 8) {
      nbits -= 8;
      out.push_back(static_cast<char>((bits >> nbits) & 0xff));
    }
  }
  return out;
}

struct Fields {
  std::string authzid, authcid, password;
};

std::optional<Fields> ReferencePlain(std::string_view raw) {
  std::size_t a = raw.find('\0');
  if (a == std::string_view::npos) return std::nullopt;
  std::size_t b = raw.find('\0', a + 1);
  if (b == std::string_view::npos) return std::nullopt;
  if (raw.find('\0', b + 1) != std::string_view::npos) return std::nullopt;
  Fields f{std::string(raw.substr(0, a)),
           std::string(raw.substr(a + 1, b - a - 1)),
           std::string(raw.substr(b + 1))};
  if (f.authcid.empty() || f.password.empty()) return std::nullopt;
  if (f.authzid.size() > 255 || f.authcid.size() > 255 ||
      f.password.size() > 255)
    return std::nullopt;
  return f;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  using popguard::front::PlainError;
  std::string_view in(reinterpret_cast<const char*>(data), size);

  std::optional<std::string> got = popguard::front::DecodeBase64(in);
  std::optional<std::string> want = ReferenceBase64(in);
  Check(got.has_value() == want.has_value(),
        "DecodeBase64 accepts exactly canonical base64");
  if (got) Check(*got == *want, "DecodeBase64 matches the reference");

  auto plain = popguard::front::DecodePlain(in);
  if (!want) {
    Check(!plain && plain.error() == PlainError::kBadBase64,
          "DecodePlain reports bad base64 as kBadBase64");
    return 0;
  }
  std::optional<Fields> fields = ReferencePlain(*want);
  if (!fields) {
    Check(!plain && plain.error() == PlainError::kBadFormat,
          "DecodePlain refuses a malformed PLAIN message as kBadFormat");
    return 0;
  }
  Check(plain.has_value(), "DecodePlain accepts a well-formed message");
  Check(plain->authzid == fields->authzid &&
            plain->authcid == fields->authcid &&
            plain->password == fields->password,
        "DecodePlain returns the three fields");
  return 0;
}
