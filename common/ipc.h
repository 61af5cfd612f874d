// Typed messages between the monitor and its children (front, worker).
//
// The channel is an AF_UNIX SOCK_SEQPACKET socketpair, so one send is one
// message and a short or oversized read is visible.  Every message is a
// 16-bit type followed by fields of fixed order: 32/64-bit integers in host
// order (both ends are the same binary family on the same host) and strings
// as a 32-bit length and the bytes.  A decoder fails on a wrong type, a short
// field, or any byte left over: the monitor treats a child as hostile, and a
// message that does not decode exactly ends the session.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <expected>
#include <string>
#include <string_view>

namespace popguard::ipc {

// Large enough for the pipelined bytes a front may hold (one read buffer)
// plus the fields; small enough that a hostile child cannot make the monitor
// allocate much.
inline constexpr std::size_t kMaxMessage = 64 * 1024;

enum class Type : std::uint16_t {
  kHello = 1,       // monitor -> front: session id, challenge, what is allowed
  kAuthPass = 2,    // front -> monitor: USER/PASS or AUTH PLAIN credentials
  kAuthApop = 3,    // front -> monitor: APOP name and digest
  kAuthResult = 4,  // monitor -> front: the verdict
  kHandoff = 5,     // front -> monitor: bytes pipelined behind the login
  kWorkerInit = 6,  // monitor -> worker: whose mailbox, how to serve it
  kSessionEnd = 7,  // worker -> monitor: how the session ended
  kRefusal = 8,     // front -> monitor: a mechanism the Hello ruled out
  kTlsResult = 9,   // front -> monitor: how a TLS handshake went
  kSpoolRequest = 10,      // worker -> monitor: a spool operation (mbox)
  kSpoolReply = 11,        // monitor -> worker: its result, maybe a descriptor
  kSandboxViolation = 12,  // front or worker -> monitor: a call the filter
                           // stopped; the sender is about to die by SIGSYS
};

enum class Error {
  kClosed,     // the peer closed the channel
  kIo,         // a system call failed
  kMalformed,  // wrong size, truncated, trailing bytes, wrong type
};

std::string_view ErrorName(Error e);

// A received message: its type and the raw body after the type field.  The
// body may hold a secret; callers that decode a password wipe it.
struct Message {
  Type type{};
  std::string body;
  int fd = -1;  // a descriptor passed with SCM_RIGHTS, owned by the receiver
  // The sender as the kernel saw it, when the receiving socket has
  // SO_PASSCRED (PassCredentials).  SO_PEERCRED would not do: on a
  // socketpair it names the process that made the pair, the monitor itself.
  bool has_sender = false;
  pid_t sender_pid = 0;
  uid_t sender_uid = 0;
};

// Makes every later message on `sock` carry its sender's pid and uid.
bool PassCredentials(int sock);

// Sends one message; if pass_fd >= 0 it travels with it.
std::expected<void, Error> Send(int sock, Type type, std::string_view body,
                                int pass_fd = -1);

// Receives one message.  More than one descriptor is closed and reported
// as kMalformed.  A single descriptor is returned in Message::fd whatever
// the type: a caller that expects none must close it and treat the message
// as a violation.
std::expected<Message, Error> Receive(int sock);

// Builds a message body field by field.
class Writer {
 public:
  Writer& U32(std::uint32_t v);
  Writer& U64(std::uint64_t v);
  Writer& Str(std::string_view s);
  const std::string& bytes() const { return out_; }
  // Overwrites the buffer; used when the body held a secret.
  void Wipe();

 private:
  std::string out_;
};

// Reads a message body field by field.  After the first failure every read
// fails; Done() is true only when all reads succeeded and nothing is left.
class Reader {
 public:
  explicit Reader(std::string_view body) : in_(body) {}
  bool U32(std::uint32_t* v);
  bool U64(std::uint64_t* v);
  // max bounds the string's length; longer is a failure.
  bool Str(std::string* s, std::size_t max);
  bool Done() const { return ok_ && in_.empty(); }

 private:
  bool Take(void* dst, std::size_t n);
  std::string_view in_;
  bool ok_ = true;
};

// --- The messages.  EncodeX / DecodeX mirror each other. ---

// Bound on names, challenges and texts carried in messages.
inline constexpr std::size_t kMaxField = 1024;

enum class AuthCode : std::uint32_t {
  kOk = 0,          // authenticated; a Handoff must follow
  kFailed = 1,      // wrong name or secret (indistinguishable on purpose)
  kRefused = 2,     // the policy forbids this mechanism on this link
  kTempFail = 3,    // the system could not decide now
  kEndSession = 4,  // too many failures: the front says goodbye and exits
  kLoginDelay = 5,  // right credentials, but too soon after the last login
                    // (RFC 2449 [LOGIN-DELAY]); the client may try later
  kBanned = 6,      // the address is refused for a while ([SYS/TEMP]); the
                    // front says so and exits
};

struct Hello {
  std::string session_id;
  std::string challenge;         // APOP banner part, "<...@host>", or empty
  std::uint32_t allow_user = 0;  // 1 if USER/PASS may be offered on this link
  std::uint32_t allow_apop = 0;  // 1 if APOP may be offered on this link
  std::uint32_t login_timeout_s = 0;
  std::uint32_t max_bad_commands = 0;
  std::uint32_t tls_available = 0;  // 1 if STLS may be offered
  std::uint32_t implicit_tls = 0;   // 1 if the handshake comes first (POP3S)
  // RFC 2449 CAPA: LOGIN-DELAY seconds (0: not announced) and EXPIRE
  // ("NEVER" or days; empty: not announced).
  std::uint32_t login_delay_s = 0;
  std::string expire;
};

struct AuthPass {
  std::string user;
  std::string password;
  std::string mechanism = "pass";  // "pass" (USER/PASS) or "plain" (SASL)
};

struct AuthApop {
  std::string user;
  std::string digest;
};

struct AuthResult {
  AuthCode code = AuthCode::kFailed;
  std::string text;  // the words after "-ERR [AUTH] " or "+OK "
};

struct Handoff {
  std::string pipelined;
};

// The front finished a TLS handshake (STLS or implicit).  On success the
// monitor answers with a new Hello: what may be used has changed.
struct TlsResult {
  std::uint32_t ok = 0;
  std::string protocol;  // "TLSv1.3"
  std::string cipher;
  std::string error;  // OpenSSL's reason, when !ok
};

// The front met a client trying a mechanism that the Hello said is not
// allowed (USER on a plain link, say).  The monitor, which decides, checks
// the policy again, records the refusal and answers kRefused.
struct Refusal {
  std::string user;
  std::string mechanism;  // "pass", "apop" or "plain"
};

enum class MailboxFormat : std::uint32_t { kMaildir = 0, kMbox = 1 };

struct WorkerInit {
  std::string session_id;
  std::string user;
  std::string mailbox;  // absolute path to the Maildir or mbox file
  MailboxFormat format = MailboxFormat::kMaildir;
  std::string pipelined;
  std::uint32_t idle_timeout_s = 600;
  std::uint32_t max_bad_commands = 10;
  // RFC 2449 CAPA of the TRANSACTION state, as in Hello.
  std::uint32_t login_delay_s = 0;
  std::string expire;
};

enum class EndReason : std::uint32_t {
  kQuit = 0,          // QUIT, UPDATE committed
  kDisconnect = 1,    // the client went away; nothing deleted
  kTimeout = 2,       // idle too long; nothing deleted
  kInUse = 3,         // another session holds the mailbox
  kMailboxError = 4,  // the mailbox could not be opened or committed
  kBadCommands = 5,   // too many bad commands
  kCommitFailed = 6,  // QUIT came, but some deletions failed
};

std::string_view EndReasonName(EndReason r);

// What a worker serving an mbox in a shared spool (/var/mail, root:mail
// 2775) cannot do as the user, and asks the monitor to do.  The monitor
// works only on the mailbox it chose at login; the request names no path.
enum class SpoolOp : std::uint32_t {
  kLock = 0,         // take the dotlock (mailbox.lock)
  kUnlock = 1,       // release it
  kCreateTemp = 2,   // a new file beside the mailbox, user:mail 0660; the
                     // reply carries its descriptor
  kCommitTemp = 3,   // rename that file over the mailbox
  kDiscardTemp = 4,  // remove that file
};

struct SpoolRequest {
  SpoolOp op = SpoolOp::kLock;
};

struct SpoolReply {
  std::uint32_t ok = 0;
  std::string error;  // when !ok: for the worker's -ERR text
};

// Built by hand in a signal handler (policy/confine.cc), decoded here.
struct SandboxViolation {
  std::uint32_t syscall = 0;
  std::uint32_t arch = 0;  // AUDIT_ARCH_* of the call
};

struct SessionEnd {
  EndReason reason = EndReason::kDisconnect;
  std::uint32_t retrieved = 0;
  std::uint64_t octets = 0;
  std::uint32_t deleted = 0;
  std::uint32_t messages = 0;  // messages in the mailbox at login
};

std::string Encode(const Hello& m);
std::string Encode(const AuthPass& m);
std::string Encode(const AuthApop& m);
std::string Encode(const AuthResult& m);
std::string Encode(const Handoff& m);
std::string Encode(const Refusal& m);
std::string Encode(const TlsResult& m);
std::string Encode(const WorkerInit& m);
std::string Encode(const SessionEnd& m);
std::string Encode(const SpoolRequest& m);
std::string Encode(const SpoolReply& m);

// Each returns false unless msg has the right type and decodes exactly.
bool Decode(const Message& msg, Hello* m);
bool Decode(const Message& msg, AuthPass* m);
bool Decode(const Message& msg, AuthApop* m);
bool Decode(const Message& msg, AuthResult* m);
bool Decode(const Message& msg, Handoff* m);
bool Decode(const Message& msg, Refusal* m);
bool Decode(const Message& msg, TlsResult* m);
bool Decode(const Message& msg, WorkerInit* m);
bool Decode(const Message& msg, SessionEnd* m);
bool Decode(const Message& msg, SpoolRequest* m);
bool Decode(const Message& msg, SpoolReply* m);
bool Decode(const Message& msg, SandboxViolation* m);

constexpr Type TypeOf(const Hello&) { return Type::kHello; }
constexpr Type TypeOf(const AuthPass&) { return Type::kAuthPass; }
constexpr Type TypeOf(const AuthApop&) { return Type::kAuthApop; }
constexpr Type TypeOf(const AuthResult&) { return Type::kAuthResult; }
constexpr Type TypeOf(const Handoff&) { return Type::kHandoff; }
constexpr Type TypeOf(const Refusal&) { return Type::kRefusal; }
constexpr Type TypeOf(const TlsResult&) { return Type::kTlsResult; }
constexpr Type TypeOf(const WorkerInit&) { return Type::kWorkerInit; }
constexpr Type TypeOf(const SessionEnd&) { return Type::kSessionEnd; }
constexpr Type TypeOf(const SpoolRequest&) { return Type::kSpoolRequest; }
constexpr Type TypeOf(const SpoolReply&) { return Type::kSpoolReply; }

// Sends m as one message of its type.  A body that held a secret is wiped
// once sent.
std::expected<void, Error> SendMessage(int sock, const AuthPass& m);
template <typename M>
std::expected<void, Error> SendMessage(int sock, const M& m) {
  return Send(sock, TypeOf(m), Encode(m));
}

}  // namespace popguard::ipc
