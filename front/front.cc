#include "front/front.h"

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <string_view>
#include <utility>

#include "common/ipc.h"
#include "common/pop3.h"
#include "common/secure.h"
#include "front/sasl.h"
#include "front/tls.h"
#ifdef POPGUARD_TEST_HOOKS
#include "policy/test_hooks.h"
#endif
#include "policy/confine.h"
#include "policy/front_policy.h"
#include "policy/landlock.h"

namespace popguard::front {
namespace {

using Clock = std::chrono::steady_clock;

// The longest name we forward; the monitor bounds it again.
constexpr std::size_t kMaxUserName = 256;

// Every step must hold, or the front serves nothing.  There is nowhere to
// log from here (no socket to syslog): the exit status tells the monitor.
void Confine(const FrontParams& p) {
  auto ok = [](const auto& r) {
    if (!r) _exit(kExitConfine);
  };
  if (chroot(p.empty_dir.c_str()) != 0 || chdir("/") != 0) _exit(kExitConfine);
  ok(policy::SwitchUser(p.uid, p.gid, {}));
  ok(policy::HardenProcess());
  // No rule at all: the front may open no file, even inside its empty
  // root, and (on kernels with Landlock ABI 4 and later) bind or connect
  // no TCP socket.  A kernel without Landlock was accepted, or refused, by
  // the listener at start (privsep.landlock).
  ok(policy::RestrictToPaths({}));
  ok(policy::LimitResource(RLIMIT_NOFILE, policy::kFrontMaxFiles));
  ok(policy::LimitResource(RLIMIT_FSIZE, 0));
  ok(policy::LimitResource(RLIMIT_NPROC, 0));
  ok(policy::InstallSeccomp(policy::FrontSyscallGroups(), p.monitor_fd));
}

// The AUTHORIZATION state of one connection.
class Authorization {
 public:
  Authorization(int client, int monitor, SSL_CTX* tls, const ipc::Hello& hi)
      : stream_(client),
        monitor_(monitor),
        tls_ctx_(tls),
        hello_(hi),
        deadline_(Clock::now() + std::chrono::seconds(hi.login_timeout_s)) {}

  int Run();

 private:
  // What the last command leaves the session to do.
  enum class Next { kRead, kExit };

  Next Handle(pop3::Command& cmd);
  Next HandleUser(const pop3::Command& cmd);
  Next HandlePass(pop3::Command& cmd);
  Next HandleApop(const pop3::Command& cmd);
  Next HandleAuth(pop3::Command& cmd);
  Next HandlePlainResponse(std::string& response);
  Next HandleStls();
  Next HandleCapa();
  Next BadCommand(std::string_view reply);
  Next Exit(int status) {
    status_ = status;
    return Next::kExit;
  }
  bool PasswordMechanismsAllowed() const { return hello_.allow_user != 0; }
  bool StartTls();
  Next SendPassword(std::string user, std::string& password,
                    std::string_view mechanism);
  Next Ask(ipc::Type type, const std::string& body);
  Next AwaitVerdict();
  Next ReportRefusal(std::string_view user, std::string_view mechanism);
  Next Answer(const ipc::AuthResult& result, int relay_fd);

  void Reply(std::string_view line) {
    out_.append(line);
    out_.append("\r\n");
  }
  bool Flush();
  bool ReadMore();

  ClientStream stream_;
  int monitor_;
  SSL_CTX* tls_ctx_;
  ipc::Hello hello_;
  Clock::time_point deadline_;
  pop3::LineReader reader_;
  std::string out_;
  std::string user_;
  bool awaiting_plain_ = false;  // "+ " sent; the next line is SASL data
  unsigned bad_commands_ = 0;
  int status_ = kExitDisconnect;
};

bool Authorization::Flush() {
  bool ok = stream_.WriteAll(out_);
  out_.clear();
  return ok;
}

// Waits for client bytes until the login deadline.
bool Authorization::ReadMore() {
  char buf[4096];
  long n = stream_.Read(buf, sizeof buf, deadline_);
  if (n < 0) {
    status_ = kExitTimeout;
    Reply("-ERR [SYS/TEMP] no login within the time allowed, closing");
    Flush();
    return false;
  }
  if (n == 0) {
    status_ = kExitDisconnect;
    return false;
  }
  reader_.Feed(std::string_view(buf, static_cast<std::size_t>(n)));
  OPENSSL_cleanse(buf, static_cast<std::size_t>(n));  // may hold a password
  return true;
}

int Authorization::Run() {
  if (hello_.implicit_tls && !StartTls()) return status_;

  std::string greeting = "+OK POP3 server ready";
  if (hello_.allow_apop && !hello_.challenge.empty())
    greeting += " " + hello_.challenge;
  Reply(greeting);
  if (!Flush()) return kExitDisconnect;

  std::string line;
  for (;;) {
    pop3::LineReader::Status s = reader_.Next(&line);
    if (s == pop3::LineReader::Status::kNeedMore) {
      if (!Flush() || !ReadMore()) return status_;
      continue;
    }
    Next next;
    if (s == pop3::LineReader::Status::kTooLong) {
      awaiting_plain_ = false;
      next = BadCommand("-ERR line too long");
    } else if (awaiting_plain_) {
      awaiting_plain_ = false;
      next = HandlePlainResponse(line);
    } else {
      pop3::Command cmd = pop3::ParseCommand(line);
      next = Handle(cmd);
      for (std::string& a : cmd.args) Wipe(a);
    }
    Wipe(line);
    if (next == Next::kExit) {
      Flush();
      return status_;
    }
  }
}

Authorization::Next Authorization::Handle(pop3::Command& cmd) {
  using pop3::Verb;
#ifdef POPGUARD_TEST_HOOKS
  if (cmd.name == "XFORBID" && !cmd.args.empty()) {
    std::string arg = cmd.args.size() > 1 ? cmd.args[1] : "";
    Reply("-ERR " + policy::AttemptForbidden(cmd.args[0], arg));
    return Next::kRead;
  }
#endif
  switch (cmd.verb) {
    case Verb::kUser: return HandleUser(cmd);
    case Verb::kPass: return HandlePass(cmd);
    case Verb::kApop: return HandleApop(cmd);
    case Verb::kAuth: return HandleAuth(cmd);
    case Verb::kStls: return HandleStls();
    case Verb::kCapa: return HandleCapa();
    case Verb::kQuit: Reply("+OK popguard signing off"); return Exit(kExitQuit);
    case Verb::kStat:
    case Verb::kList:
    case Verb::kRetr:
    case Verb::kDele:
    case Verb::kNoop:
    case Verb::kRset:
    case Verb::kTop:
    case Verb::kUidl: return BadCommand("-ERR not valid before login");
    case Verb::kUnknown: break;
  }
  return BadCommand("-ERR unknown command");
}

Authorization::Next Authorization::BadCommand(std::string_view reply) {
  if (++bad_commands_ >= hello_.max_bad_commands) {
    Reply("-ERR too many bad commands, closing");
    return Exit(kExitBadCommands);
  }
  Reply(reply);
  return Next::kRead;
}

Authorization::Next Authorization::HandleCapa() {
  Reply("+OK capability list follows");
  Reply("TOP");
  Reply("UIDL");
  Reply("RESP-CODES");
  Reply("PIPELINING");
  Reply("AUTH-RESP-CODE");
  if (hello_.tls_available && !stream_.tls()) Reply("STLS");
  if (PasswordMechanismsAllowed()) {
    Reply("USER");
    Reply("SASL PLAIN");
  }
  // RFC 2449 6.5 and 6.8: the same for every user, so no "USER" suffix.
  if (hello_.login_delay_s > 0)
    Reply("LOGIN-DELAY " + std::to_string(hello_.login_delay_s));
  if (!hello_.expire.empty()) Reply("EXPIRE " + hello_.expire);
  Reply(".");
  return Next::kRead;
}

Authorization::Next Authorization::HandleStls() {
  if (stream_.tls()) return BadCommand("-ERR already using TLS");
  if (!hello_.tls_available || !tls_ctx_)
    return BadCommand("-ERR STLS is not available");
  Reply("+OK begin TLS negotiation");
  if (!Flush()) return Exit(kExitDisconnect);
  // RFC 2595 section 4 and the STARTTLS injection attacks: whatever the
  // client sent behind STLS arrived unprotected and must not run as if it
  // came over TLS.
  reader_.Wipe();
  user_.clear();
  return StartTls() ? Next::kRead : Next::kExit;
}

// Runs the handshake and tells the monitor; the monitor's new Hello says
// what the client may now use.
bool Authorization::StartTls() {
  std::string error;
  ipc::TlsResult r;
  r.ok = stream_.StartTls(tls_ctx_, deadline_, &error) ? 1 : 0;
  if (r.ok) {
    r.protocol = stream_.Protocol();
    r.cipher = stream_.Cipher();
  } else {
    r.error = error;
  }
  if (!ipc::SendMessage(monitor_, r)) {
    status_ = kExitMonitor;
    return false;
  }
  if (!r.ok) {
    status_ = kExitTls;
    return false;
  }
  auto msg = ipc::Receive(monitor_);
  ipc::Hello updated;
  if (!msg || msg->fd >= 0 || !ipc::Decode(*msg, &updated)) {
    status_ = kExitMonitor;
    return false;
  }
  hello_ = updated;
  return true;
}

Authorization::Next Authorization::HandleUser(const pop3::Command& cmd) {
  user_.clear();
  if (cmd.args.size() != 1) return BadCommand("-ERR usage: USER name");
  if (cmd.args[0].size() > kMaxUserName)
    return BadCommand("-ERR name too long");
  if (!PasswordMechanismsAllowed()) return ReportRefusal(cmd.args[0], "pass");
  user_ = cmd.args[0];
  Reply("+OK send PASS");
  return Next::kRead;
}

Authorization::Next Authorization::HandlePass(pop3::Command& cmd) {
  if (user_.empty()) return BadCommand("-ERR send USER first");
  if (cmd.args.size() != 1 || cmd.args[0].empty())
    return BadCommand("-ERR usage: PASS password");
  if (cmd.args[0].size() > ipc::kMaxField)
    return BadCommand("-ERR password too long");
  return SendPassword(std::exchange(user_, {}), cmd.args[0], "pass");
}

Authorization::Next Authorization::HandleApop(const pop3::Command& cmd) {
  user_.clear();
  if (cmd.args.size() != 2) return BadCommand("-ERR usage: APOP name digest");
  if (cmd.args[0].size() > kMaxUserName)
    return BadCommand("-ERR name too long");
  if (!hello_.allow_apop) return ReportRefusal(cmd.args[0], "apop");
  ipc::AuthApop m{cmd.args[0], cmd.args[1]};
  return Ask(ipc::Type::kAuthApop, ipc::Encode(m));
}

// RFC 5034.  A bare "AUTH" lists the mechanisms, as many clients expect
// from the draft that preceded the RFC.
Authorization::Next Authorization::HandleAuth(pop3::Command& cmd) {
  user_.clear();
  if (cmd.args.empty()) {
    Reply("+OK");
    if (PasswordMechanismsAllowed()) Reply("PLAIN");
    Reply(".");
    return Next::kRead;
  }
  std::string mech = cmd.args[0];
  for (char& c : mech) c = static_cast<char>(toupper(c));
  if (mech != "PLAIN" || cmd.args.size() > 2)
    return BadCommand("-ERR unsupported authentication mechanism");
  if (!PasswordMechanismsAllowed()) return ReportRefusal("", "plain");
  if (cmd.args.size() == 2) return HandlePlainResponse(cmd.args[1]);
  Reply("+ ");
  awaiting_plain_ = true;
  return Next::kRead;
}

Authorization::Next Authorization::HandlePlainResponse(std::string& response) {
  if (response == "*") {
    Reply("-ERR authentication cancelled");
    return Next::kRead;
  }
  auto creds = DecodePlain(response);
  Wipe(response);
  if (!creds) {
    return BadCommand(creds.error() == PlainError::kBadBase64
                          ? "-ERR invalid base64 in the SASL response"
                          : "-ERR malformed SASL PLAIN response");
  }
  if (!creds->authzid.empty() && creds->authzid != creds->authcid) {
    Wipe(creds->password);
    Reply("-ERR [AUTH] acting as another user is not allowed");
    return Next::kRead;
  }
  return SendPassword(std::move(creds->authcid), creds->password, "plain");
}

Authorization::Next Authorization::SendPassword(std::string user,
                                                std::string& password,
                                                std::string_view mechanism) {
  ipc::AuthPass m{std::move(user), std::move(password), std::string(mechanism)};
  Wipe(password);
  auto sent = ipc::SendMessage(monitor_, m);
  Wipe(m.password);
  if (!sent) return Exit(kExitMonitor);
  return AwaitVerdict();
}

Authorization::Next Authorization::ReportRefusal(std::string_view user,
                                                 std::string_view mechanism) {
  ipc::Refusal m{std::string(user), std::string(mechanism)};
  return Ask(ipc::Type::kRefusal, ipc::Encode(m));
}

Authorization::Next Authorization::Ask(ipc::Type type,
                                       const std::string& body) {
  if (!ipc::Send(monitor_, type, body)) return Exit(kExitMonitor);
  return AwaitVerdict();
}

Authorization::Next Authorization::AwaitVerdict() {
  auto msg = ipc::Receive(monitor_);
  ipc::AuthResult result;
  if (!msg || !ipc::Decode(*msg, &result)) {
    if (msg && msg->fd >= 0) close(msg->fd);
    return Exit(kExitMonitor);
  }
  return Answer(result, msg->fd);
}

Authorization::Next Authorization::Answer(const ipc::AuthResult& result,
                                          int relay_fd) {
  // A relay socket comes with a successful login on a TLS link, and only
  // then.
  bool want_relay = result.code == ipc::AuthCode::kOk && stream_.tls();
  if ((relay_fd >= 0) != want_relay) {
    if (relay_fd >= 0) close(relay_fd);
    return Exit(kExitMonitor);
  }
  switch (result.code) {
    case ipc::AuthCode::kOk: {
      // The worker answers the login once it holds the mailbox; what the
      // client sent behind the login goes with the stream.
      if (!Flush()) return Exit(kExitDisconnect);
      ipc::Handoff h{std::string(reader_.Pending())};
      reader_.Wipe();
      if (!ipc::SendMessage(monitor_, h)) return Exit(kExitMonitor);
      if (relay_fd >= 0) {
        stream_.Relay(relay_fd);
        stream_.Shutdown();
        close(relay_fd);
      }
      return Exit(kExitHandedOff);
    }
    case ipc::AuthCode::kFailed:
    case ipc::AuthCode::kRefused:
      Reply("-ERR [AUTH] " + result.text);
      return Next::kRead;
    case ipc::AuthCode::kTempFail:
      Reply("-ERR [SYS/TEMP] " + result.text);
      return Next::kRead;
    case ipc::AuthCode::kEndSession:
      Reply("-ERR [AUTH] " + result.text);
      return Exit(kExitFailures);
    case ipc::AuthCode::kLoginDelay:
      Reply("-ERR [LOGIN-DELAY] " + result.text);
      return Next::kRead;
    case ipc::AuthCode::kBanned:
      Reply("-ERR [SYS/TEMP] " + result.text);
      return Exit(kExitFailures);
  }
  return Exit(kExitMonitor);
}

}  // namespace

void RunFront(const FrontParams& params) {
  Confine(params);

  auto msg = ipc::Receive(params.monitor_fd);
  ipc::Hello hello;
  if (!msg || msg->fd >= 0 || !ipc::Decode(*msg, &hello)) _exit(kExitMonitor);

  Authorization auth(params.client_fd, params.monitor_fd, params.tls, hello);
  _exit(auth.Run());
}

}  // namespace popguard::front
