// pop.auth: the APOP secrets, and the key they are encrypted under.
//
// APOP needs each secret in recoverable form (the server computes
// MD5(challenge + secret)), so a hash will not do.  The secrets are instead
// sealed with AES-256-GCM under a 32-byte key in a separate file that only
// root reads; a copy of pop.auth alone (a backup, a mistaken chmod) gives
// nothing away.
//
// The database is a text file:
//
//   popguard-popauth 1
//   taro:aes-256-gcm:BASE64(nonce[12] | ciphertext | tag[16])
//
// The first line names the format and its version; each further line is one
// user, with the mechanism that protects the entry.  The user name is the
// GCM associated data, so a line copied onto another user does not decrypt.
// A new mechanism (say, SCRAM-SHA-256's salted keys) is a new mechanism
// name, and an unknown one is reported with its line number, never skipped.
//
// Files and ownership:
//   - the key file: owned by root, no group or other access, exactly 32
//     bytes; popauth -init makes it (and its directory, mode 0755) if it is
//     missing;
//   - the database: owned by `pop` where that user exists, else root (root
//     is always accepted, so adding `pop` later breaks nothing), no group or
//     other access;
//   - `<db>.lock` beside the database serialises writers (flock);
//   - `<db>.tmp` beside it is the next version while a writer works.
// Any other owner or mode is refused with an error that names the file.
//
// Every change reads the whole file, modifies it in memory, writes a new
// file, fsyncs it, renames it over the old one and fsyncs the directory,
// all under the lock.  Readers take no lock: they see the old file or the
// new one, never a mix.  On any failure the old file is left as it was.
#pragma once

#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace popguard::monitor {

inline constexpr char kDefaultPopAuthPath[] = "/etc/pop.auth";
inline constexpr char kDefaultPopAuthKeyPath[] = "/etc/popguard/pop.auth.key";

// What the popauth tool accepts as a secret.  Eight characters is the
// least that resists a quick guess from one captured APOP exchange (the
// digest is MD5, cheap to brute-force offline); 255 matches the longest
// line the tool reads and any client will send.
inline constexpr std::size_t kMinSecretLength = 8;
inline constexpr std::size_t kMaxSecretLength = 255;

// The longest user name an entry may have (the Linux login name limit).
inline constexpr std::size_t kMaxUserName = 32;

enum class PopAuthError {
  kNoDatabase,      // the database file does not exist (run popauth -init)
  kNoKey,           // the key file does not exist
  kBadPermissions,  // wrong owner, group/other access, or not a plain file
  kCorrupt,         // bad header, version, line, encoding, or a failed seal
  kIo,              // a system call failed
  kLocked,          // another writer held the lock too long
  kNoSuchUser,      // no entry for that user (DeleteUser)
  kExists,          // the database exists (InitDatabase with keep_existing)
  kBadName,         // not a valid user name
};

// A short fixed phrase for the error, e.g. "database is corrupt".
std::string_view PopAuthErrorText(PopAuthError e);

// An error and a sentence for an admin that names the file, and the line
// where there is one ("/etc/pop.auth:7: unknown mechanism 'x'").
struct PopAuthFailure {
  PopAuthError code;
  std::string detail;
};

struct PopAuthFiles {
  std::string db_path = kDefaultPopAuthPath;
  std::string key_path = kDefaultPopAuthKeyPath;
  // Off only in tests that run without root: then no file's owner is
  // checked and new files keep the caller as owner.  The mode check stays
  // on.
  bool check_owner = true;
};

// True for a system user name: [a-z_][a-z0-9_.-]*, at most kMaxUserName.
bool ValidPopAuthName(std::string_view name);

// The monitor's lookup for APOP.  Returns the secret, or nullopt when the
// user has no entry (the caller must fail APOP exactly as for a wrong
// digest).  The caller wipes the returned secret.  The key is read and its
// file checked whether or not the user has an entry.
std::expected<std::optional<std::string>, PopAuthError> LookupSecret(
    const std::string& db_path, const std::string& key_path,
    std::string_view user);

// As LookupSecret, with the detail an admin needs and the owner check
// chosen by `files`.
std::expected<std::optional<std::string>, PopAuthFailure> LookupSecretIn(
    const PopAuthFiles& files, std::string_view user);

// Reads and checks both files (owner, mode, format, every line) without
// changing anything: what popauth does before it asks for a secret.
std::expected<void, PopAuthFailure> VerifyPopAuthFiles(
    const PopAuthFiles& files);

// Creates the key file if it is missing (checks it if present) and writes
// an empty database, replacing any existing one unless `keep_existing`,
// in which case an existing database is kExists and nothing changes.
std::expected<void, PopAuthFailure> InitDatabase(const PopAuthFiles& files,
                                                 bool keep_existing);

// Sets the secret of `user`, adding or replacing its entry.  Returns true
// if an entry was replaced.  The secret's length is the caller's business
// (the popauth tool applies kMinSecretLength); an empty one is refused as
// kIo, since no other code fits a caller's mistake.
std::expected<bool, PopAuthFailure> SetSecret(const PopAuthFiles& files,
                                              std::string_view user,
                                              std::string_view secret);

// Removes the entry of `user`; kNoSuchUser if there is none.  Does not need
// the key.
std::expected<void, PopAuthFailure> DeleteUser(const PopAuthFiles& files,
                                               std::string_view user);

// The names with an entry, in file order.  Does not need the key.
std::expected<std::vector<std::string>, PopAuthFailure> ListUsers(
    const PopAuthFiles& files);

// One sentence per exposure of the two files (owner, mode, not a plain
// file), for --check-config.  A file that does not exist is not reported.
std::vector<std::string> CheckPopAuthExposure(const PopAuthFiles& files);

}  // namespace popguard::monitor
