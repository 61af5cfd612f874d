// SASL PLAIN (RFC 4616) as AUTH carries it (RFC 5034): strict base64 and
// the three NUL-separated fields.  Runs on untrusted bytes in the front.
#pragma once

#include <expected>
#include <optional>
#include <string>
#include <string_view>

namespace popguard::front {

// Decodes canonical base64 (RFC 4648 section 4): a length that is a
// multiple of four, padding only at the end.  Anything else is nullopt.
std::optional<std::string> DecodeBase64(std::string_view in);

struct PlainCredentials {
  std::string authzid;  // empty, or the identity to act as
  std::string authcid;  // the user
  std::string password;
};

enum class PlainError {
  kBadBase64,
  kBadFormat,  // not authzid NUL authcid NUL password, or a field too long
};

// Decodes an initial or continued response.  The caller wipes the
// password.
std::expected<PlainCredentials, PlainError> DecodePlain(
    std::string_view base64);

}  // namespace popguard::front
