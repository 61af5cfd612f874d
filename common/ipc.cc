#include "common/ipc.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "common/secure.h"

namespace popguard::ipc {

std::string_view ErrorName(Error e) {
  switch (e) {
    case Error::kClosed: return "closed";
    case Error::kIo: return "io";
    case Error::kMalformed: return "malformed";
  }
  return "unknown";
}

std::string_view EndReasonName(EndReason r) {
  switch (r) {
    case EndReason::kQuit: return "quit";
    case EndReason::kDisconnect: return "disconnect";
    case EndReason::kTimeout: return "timeout";
    case EndReason::kInUse: return "in-use";
    case EndReason::kMailboxError: return "mailbox-error";
    case EndReason::kBadCommands: return "bad-commands";
    case EndReason::kCommitFailed: return "commit-failed";
  }
  return "unknown";
}

std::expected<void, Error> Send(int sock, Type type, std::string_view body,
                                int pass_fd) {
  if (body.size() + sizeof(std::uint16_t) > kMaxMessage)
    return std::unexpected(Error::kMalformed);
  auto raw = static_cast<std::uint16_t>(type);
  iovec iov[2] = {{&raw, sizeof raw},
                  {const_cast<char*>(body.data()), body.size()}};
  msghdr mh{};
  mh.msg_iov = iov;
  mh.msg_iovlen = 2;
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))] = {};
  if (pass_fd >= 0) {
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof cbuf;
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
  }
  ssize_t n;
  do {
    n = sendmsg(sock, &mh, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0)
    return std::unexpected(errno == EPIPE ? Error::kClosed : Error::kIo);
  return {};
}

namespace {

// Closes every descriptor that arrived with a message; returns the first
// one if exactly one came.
int CollectFd(msghdr* mh, bool* extra, Message* m) {
  int got = -1;
  for (cmsghdr* c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS &&
        c->cmsg_len == CMSG_LEN(sizeof(ucred))) {
      ucred cred;
      std::memcpy(&cred, CMSG_DATA(c), sizeof cred);
      m->sender_pid = cred.pid;
      m->sender_uid = cred.uid;
      m->has_sender = true;
      continue;
    }
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    std::size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < n; i++) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      if (got < 0 && !*extra) {
        got = fd;
      } else {
        *extra = true;
        close(fd);
      }
    }
  }
  return got;
}

}  // namespace

bool PassCredentials(int sock) {
  int one = 1;
  return setsockopt(sock, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) == 0;
}

std::expected<Message, Error> Receive(int sock) {
  std::vector<char> buf(kMaxMessage + 1);
  iovec iov{buf.data(), buf.size()};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(cmsghdr) char
      cbuf[CMSG_SPACE(sizeof(int) * 4) + CMSG_SPACE(sizeof(ucred))];
  mh.msg_control = cbuf;
  mh.msg_controllen = sizeof cbuf;
  ssize_t n;
  do {
    n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return std::unexpected(Error::kIo);

  bool extra = false;
  Message m;
  int fd = CollectFd(&mh, &extra, &m);
  auto fail = [&](Error e) -> std::expected<Message, Error> {
    if (fd >= 0) close(fd);
    std::fill(buf.begin(), buf.end(), 0);
    return std::unexpected(e);
  };
  if (n == 0) return fail(Error::kClosed);
  if (extra || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
      static_cast<std::size_t>(n) < sizeof(std::uint16_t) ||
      static_cast<std::size_t>(n) > kMaxMessage)
    return fail(Error::kMalformed);

  std::uint16_t raw;
  std::memcpy(&raw, buf.data(), sizeof raw);
  m.type = static_cast<Type>(raw);
  m.body.assign(buf.data() + sizeof raw, n - sizeof raw);
  m.fd = fd;
  std::fill(buf.begin(), buf.begin() + n, 0);
  return m;
}

Writer& Writer::U32(std::uint32_t v) {
  out_.append(reinterpret_cast<const char*>(&v), sizeof v);
  return *this;
}

Writer& Writer::U64(std::uint64_t v) {
  out_.append(reinterpret_cast<const char*>(&v), sizeof v);
  return *this;
}

Writer& Writer::Str(std::string_view s) {
  U32(static_cast<std::uint32_t>(s.size()));
  out_.append(s);
  return *this;
}

void Writer::Wipe() { popguard::Wipe(out_); }

bool Reader::Take(void* dst, std::size_t n) {
  if (!ok_ || in_.size() < n) return ok_ = false;
  std::memcpy(dst, in_.data(), n);
  in_.remove_prefix(n);
  return true;
}

bool Reader::U32(std::uint32_t* v) { return Take(v, sizeof *v); }
bool Reader::U64(std::uint64_t* v) { return Take(v, sizeof *v); }

bool Reader::Str(std::string* s, std::size_t max) {
  std::uint32_t len;
  if (!U32(&len)) return false;
  if (len > max || len > in_.size()) return ok_ = false;
  s->assign(in_.data(), len);
  in_.remove_prefix(len);
  return true;
}

// --- Encoders and decoders, in the order of the header. ---

std::string Encode(const Hello& m) {
  Writer w;
  w.Str(m.session_id).Str(m.challenge).U32(m.allow_user).U32(m.allow_apop);
  w.U32(m.login_timeout_s).U32(m.max_bad_commands);
  w.U32(m.tls_available).U32(m.implicit_tls);
  w.U32(m.login_delay_s).Str(m.expire);
  return w.bytes();
}

bool Decode(const Message& msg, Hello* m) {
  Reader r(msg.body);
  return msg.type == Type::kHello && r.Str(&m->session_id, kMaxField) &&
         r.Str(&m->challenge, kMaxField) && r.U32(&m->allow_user) &&
         r.U32(&m->allow_apop) && r.U32(&m->login_timeout_s) &&
         r.U32(&m->max_bad_commands) && r.U32(&m->tls_available) &&
         r.U32(&m->implicit_tls) && r.U32(&m->login_delay_s) &&
         r.Str(&m->expire, 16) && r.Done();
}

std::string Encode(const AuthPass& m) {
  Writer w;
  w.Str(m.user).Str(m.password).Str(m.mechanism);
  return w.bytes();
}

std::expected<void, Error> SendMessage(int sock, const AuthPass& m) {
  Writer w;
  w.Str(m.user).Str(m.password).Str(m.mechanism);
  auto r = Send(sock, Type::kAuthPass, w.bytes());
  w.Wipe();
  return r;
}

bool Decode(const Message& msg, AuthPass* m) {
  Reader r(msg.body);
  return msg.type == Type::kAuthPass && r.Str(&m->user, kMaxField) &&
         r.Str(&m->password, kMaxField) && r.Str(&m->mechanism, 16) && r.Done();
}

std::string Encode(const AuthApop& m) {
  Writer w;
  w.Str(m.user).Str(m.digest);
  return w.bytes();
}

bool Decode(const Message& msg, AuthApop* m) {
  Reader r(msg.body);
  return msg.type == Type::kAuthApop && r.Str(&m->user, kMaxField) &&
         r.Str(&m->digest, kMaxField) && r.Done();
}

std::string Encode(const AuthResult& m) {
  Writer w;
  w.U32(static_cast<std::uint32_t>(m.code)).Str(m.text);
  return w.bytes();
}

bool Decode(const Message& msg, AuthResult* m) {
  Reader r(msg.body);
  std::uint32_t code;
  if (msg.type != Type::kAuthResult || !r.U32(&code) ||
      code > static_cast<std::uint32_t>(AuthCode::kBanned))
    return false;
  m->code = static_cast<AuthCode>(code);
  return r.Str(&m->text, kMaxField) && r.Done();
}

std::string Encode(const Handoff& m) {
  Writer w;
  w.Str(m.pipelined);
  return w.bytes();
}

bool Decode(const Message& msg, Handoff* m) {
  Reader r(msg.body);
  return msg.type == Type::kHandoff && r.Str(&m->pipelined, kMaxMessage) &&
         r.Done();
}

std::string Encode(const Refusal& m) {
  Writer w;
  w.Str(m.user).Str(m.mechanism);
  return w.bytes();
}

bool Decode(const Message& msg, Refusal* m) {
  Reader r(msg.body);
  return msg.type == Type::kRefusal && r.Str(&m->user, kMaxField) &&
         r.Str(&m->mechanism, kMaxField) && r.Done();
}

std::string Encode(const TlsResult& m) {
  Writer w;
  w.U32(m.ok).Str(m.protocol).Str(m.cipher).Str(m.error);
  return w.bytes();
}

bool Decode(const Message& msg, TlsResult* m) {
  Reader r(msg.body);
  return msg.type == Type::kTlsResult && r.U32(&m->ok) && m->ok <= 1 &&
         r.Str(&m->protocol, 64) && r.Str(&m->cipher, 128) &&
         r.Str(&m->error, kMaxField) && r.Done();
}

std::string Encode(const WorkerInit& m) {
  Writer w;
  w.Str(m.session_id).Str(m.user).Str(m.mailbox);
  w.U32(static_cast<std::uint32_t>(m.format)).Str(m.pipelined);
  w.U32(m.idle_timeout_s).U32(m.max_bad_commands);
  w.U32(m.login_delay_s).Str(m.expire);
  return w.bytes();
}

bool Decode(const Message& msg, WorkerInit* m) {
  Reader r(msg.body);
  std::uint32_t format;
  if (msg.type != Type::kWorkerInit || !r.Str(&m->session_id, kMaxField) ||
      !r.Str(&m->user, kMaxField) || !r.Str(&m->mailbox, 4096) ||
      !r.U32(&format) ||
      format > static_cast<std::uint32_t>(MailboxFormat::kMbox))
    return false;
  m->format = static_cast<MailboxFormat>(format);
  return r.Str(&m->pipelined, kMaxMessage) && r.U32(&m->idle_timeout_s) &&
         r.U32(&m->max_bad_commands) && r.U32(&m->login_delay_s) &&
         r.Str(&m->expire, 16) && r.Done();
}

std::string Encode(const SessionEnd& m) {
  Writer w;
  w.U32(static_cast<std::uint32_t>(m.reason)).U32(m.retrieved);
  w.U64(m.octets).U32(m.deleted).U32(m.messages);
  return w.bytes();
}

bool Decode(const Message& msg, SessionEnd* m) {
  Reader r(msg.body);
  std::uint32_t reason;
  if (msg.type != Type::kSessionEnd || !r.U32(&reason) ||
      reason > static_cast<std::uint32_t>(EndReason::kCommitFailed))
    return false;
  m->reason = static_cast<EndReason>(reason);
  return r.U32(&m->retrieved) && r.U64(&m->octets) && r.U32(&m->deleted) &&
         r.U32(&m->messages) && r.Done();
}

std::string Encode(const SpoolRequest& m) {
  Writer w;
  w.U32(static_cast<std::uint32_t>(m.op));
  return w.bytes();
}

bool Decode(const Message& msg, SpoolRequest* m) {
  Reader r(msg.body);
  std::uint32_t op;
  if (msg.type != Type::kSpoolRequest || !r.U32(&op) ||
      op > static_cast<std::uint32_t>(SpoolOp::kDiscardTemp))
    return false;
  m->op = static_cast<SpoolOp>(op);
  return r.Done();
}

std::string Encode(const SpoolReply& m) {
  Writer w;
  w.U32(m.ok).Str(m.error);
  return w.bytes();
}

bool Decode(const Message& msg, SpoolReply* m) {
  Reader r(msg.body);
  return msg.type == Type::kSpoolReply && r.U32(&m->ok) && m->ok <= 1 &&
         r.Str(&m->error, kMaxField) && r.Done();
}

bool Decode(const Message& msg, SandboxViolation* m) {
  Reader r(msg.body);
  return msg.type == Type::kSandboxViolation && r.U32(&m->syscall) &&
         r.U32(&m->arch) && r.Done();
}

}  // namespace popguard::ipc
