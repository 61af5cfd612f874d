#include "front/front.h"

#include <openssl/crypto.h>
#include <poll.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <string>
#include <string_view>
#include <utility>

#include "common/ipc.h"
#include "common/pop3.h"
#include "common/secure.h"
#include "policy/confine.h"
#include "policy/front_policy.h"

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
  if (chroot(p.empty_dir.c_str()) != 0 || chdir("/") != 0)
    _exit(kExitConfine);
  ok(policy::SwitchUser(p.uid, p.gid, {}));
  ok(policy::HardenProcess());
  ok(policy::LimitResource(RLIMIT_NOFILE, policy::kFrontMaxFiles));
  ok(policy::LimitResource(RLIMIT_FSIZE, 0));
  ok(policy::LimitResource(RLIMIT_NPROC, 0));
  ok(policy::InstallSeccomp(policy::FrontSyscallGroups()));
}

// The AUTHORIZATION state of one connection.
class Authorization {
 public:
  Authorization(int client, int monitor, const ipc::Hello& hello)
      : client_(client),
        monitor_(monitor),
        hello_(hello),
        deadline_(Clock::now() +
                  std::chrono::seconds(hello.login_timeout_s)) {}

  int Run();

 private:
  // What the last command leaves the session to do.
  enum class Next { kRead, kExit };

  Next Handle(pop3::Command& cmd);
  Next HandleUser(const pop3::Command& cmd);
  Next HandlePass(pop3::Command& cmd);
  Next HandleApop(const pop3::Command& cmd);
  Next HandleCapa();
  Next BadCommand(std::string_view reply);
  Next Ask(ipc::Type type, const std::string& body);
  Next AwaitVerdict();
  Next ReportRefusal(std::string_view mechanism);
  Next Answer(const ipc::AuthResult& result);

  void Reply(std::string_view line) {
    out_.append(line);
    out_.append("\r\n");
  }
  bool Flush();
  bool ReadMore();

  int client_;
  int monitor_;
  ipc::Hello hello_;
  Clock::time_point deadline_;
  pop3::LineReader reader_;
  std::string out_;
  std::string user_;
  unsigned bad_commands_ = 0;
  int status_ = kExitDisconnect;
};

bool Authorization::Flush() {
  std::string_view rest = out_;
  while (!rest.empty()) {
    ssize_t n = write(client_, rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    rest.remove_prefix(static_cast<std::size_t>(n));
  }
  out_.clear();
  return true;
}

// Waits for client bytes until the login deadline.
bool Authorization::ReadMore() {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline_ - Clock::now());
  if (left.count() <= 0) {
    status_ = kExitTimeout;
    return false;
  }
  pollfd pfd{client_, POLLIN, 0};
  int r = poll(&pfd, 1, static_cast<int>(left.count()));
  if (r < 0 && errno == EINTR) return true;
  if (r == 0) {
    status_ = kExitTimeout;
    Reply("-ERR [SYS/TEMP] no login within the time allowed, closing");
    Flush();
    return false;
  }
  char buf[4096];
  ssize_t n = read(client_, buf, sizeof buf);
  if (n < 0 && errno == EINTR) return true;
  if (n <= 0) {
    status_ = kExitDisconnect;
    return false;
  }
  reader_.Feed(std::string_view(buf, static_cast<std::size_t>(n)));
  OPENSSL_cleanse(buf, static_cast<std::size_t>(n));  // may hold a password
  return true;
}

int Authorization::Run() {
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
      next = BadCommand("-ERR line too long");
    } else {
      pop3::Command cmd = pop3::ParseCommand(line);
      Wipe(line);
      next = Handle(cmd);
      for (std::string& a : cmd.args) Wipe(a);
    }
    if (next == Next::kExit) {
      Flush();
      return status_;
    }
  }
}

Authorization::Next Authorization::Handle(pop3::Command& cmd) {
  using pop3::Verb;
  switch (cmd.verb) {
    case Verb::kUser: return HandleUser(cmd);
    case Verb::kPass: return HandlePass(cmd);
    case Verb::kApop: return HandleApop(cmd);
    case Verb::kCapa: return HandleCapa();
    case Verb::kQuit:
      Reply("+OK popguard signing off");
      status_ = kExitQuit;
      return Next::kExit;
    case Verb::kStls:
    case Verb::kAuth:
      return BadCommand("-ERR not supported on this server");
    case Verb::kStat: case Verb::kList: case Verb::kRetr: case Verb::kDele:
    case Verb::kNoop: case Verb::kRset: case Verb::kTop: case Verb::kUidl:
      return BadCommand("-ERR not valid before login");
    case Verb::kUnknown:
      break;
  }
  return BadCommand("-ERR unknown command");
}

Authorization::Next Authorization::BadCommand(std::string_view reply) {
  if (++bad_commands_ >= hello_.max_bad_commands) {
    Reply("-ERR too many bad commands, closing");
    status_ = kExitBadCommands;
    return Next::kExit;
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
  if (hello_.allow_user) Reply("USER");
  Reply(".");
  return Next::kRead;
}

Authorization::Next Authorization::HandleUser(const pop3::Command& cmd) {
  user_.clear();
  if (cmd.args.size() != 1) return BadCommand("-ERR usage: USER name");
  if (cmd.args[0].size() > kMaxUserName)
    return BadCommand("-ERR name too long");
  if (!hello_.allow_user) return ReportRefusal("pass");
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

  ipc::AuthPass m{std::exchange(user_, {}), std::move(cmd.args[0])};
  auto sent = ipc::SendMessage(monitor_, m);
  Wipe(m.password);
  if (!sent) {
    status_ = kExitMonitor;
    return Next::kExit;
  }
  return AwaitVerdict();
}

Authorization::Next Authorization::HandleApop(const pop3::Command& cmd) {
  user_.clear();
  if (cmd.args.size() != 2) return BadCommand("-ERR usage: APOP name digest");
  if (cmd.args[0].size() > kMaxUserName)
    return BadCommand("-ERR name too long");
  if (!hello_.allow_apop) return ReportRefusal("apop");
  ipc::AuthApop m{cmd.args[0], cmd.args[1]};
  return Ask(ipc::Type::kAuthApop, ipc::Encode(m));
}

Authorization::Next Authorization::ReportRefusal(std::string_view mechanism) {
  ipc::Refusal m{user_.empty() ? std::string() : user_,
                 std::string(mechanism)};
  return Ask(ipc::Type::kRefusal, ipc::Encode(m));
}

Authorization::Next Authorization::Ask(ipc::Type type,
                                       const std::string& body) {
  if (!ipc::Send(monitor_, type, body)) {
    status_ = kExitMonitor;
    return Next::kExit;
  }
  return AwaitVerdict();
}

Authorization::Next Authorization::AwaitVerdict() {
  auto msg = ipc::Receive(monitor_);
  ipc::AuthResult result;
  if (!msg || !ipc::Decode(*msg, &result)) {
    status_ = kExitMonitor;
    return Next::kExit;
  }
  return Answer(result);
}

Authorization::Next Authorization::Answer(const ipc::AuthResult& result) {
  switch (result.code) {
    case ipc::AuthCode::kOk: {
      // The worker answers the login once it holds the mailbox; what the
      // client sent behind the login goes with the stream.
      if (!Flush()) {
        status_ = kExitDisconnect;
        return Next::kExit;
      }
      ipc::Handoff h{std::string(reader_.Pending())};
      reader_.Wipe();
      status_ = ipc::SendMessage(monitor_, h) ? kExitHandedOff : kExitMonitor;
      return Next::kExit;
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
      status_ = kExitFailures;
      return Next::kExit;
  }
  status_ = kExitMonitor;
  return Next::kExit;
}

}  // namespace

void RunFront(const FrontParams& params) {
  Confine(params);

  auto msg = ipc::Receive(params.monitor_fd);
  ipc::Hello hello;
  if (!msg || !ipc::Decode(*msg, &hello)) _exit(kExitMonitor);

  Authorization auth(params.client_fd, params.monitor_fd, hello);
  _exit(auth.Run());
}

}  // namespace popguard::front
