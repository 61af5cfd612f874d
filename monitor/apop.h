// APOP (RFC 1939 section 7): the banner challenge and the digest check.
//
// The monitor makes one challenge per connection, puts it in the greeting
// through the front, and later checks the client's digest against the
// secret from pop.auth.  Neither function logs or keeps what it is given.
#pragma once

#include <string>
#include <string_view>

namespace popguard::monitor {

// Longest host part a challenge carries; a longer name is cut.  RFC 1035
// bounds a domain name at 255 octets.
inline constexpr std::size_t kMaxChallengeHost = 255;

// Returns "<PID.TIME.RANDOM@HOST>": the process id, the time in
// microseconds and 128 bits from RAND_bytes as 32 lower-case hex digits, so
// it is unpredictable and unique per connection.  Between '<' and '>' there
// are only letters, digits, '.', '-' and the one '@': some clients (mpop)
// refuse a challenge holding '=' or '+'.  `host` is reduced to those
// characters (others dropped) and cut to kMaxChallengeHost; if nothing is
// left, "localhost" is used.
//
// Returns an empty string if the random generator fails: the caller then
// does not offer APOP on this connection rather than send a guessable
// challenge.
std::string MakeChallenge(std::string_view host);

// True if `digest` is MD5(challenge + secret) as 32 hex digits (either
// case).  The comparison takes the same time wherever the digits differ,
// and a digest of the wrong length costs the same work as a right one, so
// the answer's timing says nothing about the secret.
bool CheckApopDigest(std::string_view challenge, std::string_view secret,
                     std::string_view digest);

}  // namespace popguard::monitor
