#include "monitor/monitor.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <poll.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <optional>
#include <thread>

#include "common/ipc.h"
#include "common/log.h"
#include "common/proxy.h"
#include "common/secure.h"
#include "front/front.h"
#include "monitor/apop.h"
#include "monitor/pam_auth.h"
#include "monitor/penalty.h"
#include "monitor/popauth_db.h"
#include "monitor/spawn.h"
#include "monitor/spool.h"
#include "policy/auth_policy.h"
#include "policy/landlock.h"

namespace popguard::monitor {
namespace {

using Clock = std::chrono::steady_clock;

// What a client is told on any failed login, whatever the cause: an
// unknown user, a wrong password, a system account, a missing pop.auth
// entry all read the same.
constexpr const char* kFailedText = "authentication failed";

// The monitor gives the front this long beyond the login timeout it was
// told to keep before it kills it.
constexpr int kFrontGraceMs = 5000;

// A balancer sends its PROXY header at once; the spec asks receivers to
// wait at least 3 seconds (a TCP retransmit) before giving up.
constexpr int kProxyHeaderMs = 5000;

constexpr char kBannedText[] =
    "too many failed logins from your address, try again later";

enum class State { kAuth, kAwaitHandoff };

// The monitor's request table: which message from the front is legal in
// which state, and how often in the whole session.  Anything else ends the
// session with an audit record.
struct RequestRule {
  ipc::Type type;
  State state;
  unsigned max_count;  // 0: bounded only by the failure limit
};

constexpr RequestRule kFrontRequests[] = {
    {ipc::Type::kAuthPass, State::kAuth, 0},
    {ipc::Type::kAuthApop, State::kAuth, 0},
    {ipc::Type::kRefusal, State::kAuth, 0},
    {ipc::Type::kTlsResult, State::kAuth, 1},
    {ipc::Type::kHandoff, State::kAwaitHandoff, 1},
};

std::string NewSessionId() {
  unsigned char raw[6];
  if (RAND_bytes(raw, sizeof raw) != 1) {
    // Uniqueness, not secrecy, is what the id needs.
    auto t = Clock::now().time_since_epoch().count() ^ getpid();
    std::memcpy(raw, &t, sizeof raw);
  }
  std::string id;
  for (unsigned char c : raw) id += fmt::format("{:02x}", c);
  return id;
}

std::string_view FrontEnding(int status) {
  switch (status) {
    case front::kExitQuit: return "quit";
    case front::kExitDisconnect: return "disconnect";
    case front::kExitTimeout: return "login-timeout";
    case front::kExitBadCommands: return "bad-commands";
    case front::kExitFailures: return "auth-failures";
    case front::kExitMonitor: return "front-error";
    case front::kExitConfine: return "front-confine-failed";
    case front::kExitTls: return "tls-failed";
    case -1: return "front-killed";
    default: return "front-error";
  }
}

class Monitor {
 public:
  Monitor(const Runtime& rt, int client, SessionFacts facts, bool proxied)
      : rt_(rt),
        cfg_(rt.config),
        client_(client),
        facts_(std::move(facts)),
        proxied_(proxied),
        limits_(PenaltySettings::From(rt.config)) {}
  ~Monitor();

  int Run();

 private:
  bool ReadProxyHeader();
  bool Admit();
  void Refuse(std::string_view line);
  bool BannedNow();
  bool EndBanned(std::string_view user, std::string_view mech);
  bool StartFrontProcess();
  ipc::Hello MakeHello();
  bool ServeFront();
  bool Permitted(ipc::Type type);
  bool NoteForbiddenCall(const ipc::Message& msg);
  bool Dispatch(ipc::Message& msg);
  bool AnswerPass(ipc::Message& msg);
  bool AnswerApop(const ipc::Message& msg);
  bool AnswerRefusal(const ipc::Message& msg);
  bool AnswerHandoff(const ipc::Message& msg);
  bool AnswerTlsResult(const ipc::Message& msg);
  bool Verdict(ipc::AuthCode code, std::string text, int pass_fd = -1);
  bool Fail(std::string_view user, std::string_view mech,
            std::string_view reason, Clock::time_point began);
  bool Succeed(const Identity& who, std::string_view mech);
  bool HasApopSecret(const std::string& user);
  bool EligibleUser(const std::string& name, Identity* who,
                    std::string* reason);
  int ReapFront();
  void RunWorker();
  std::string ServeWorker(int sock, pid_t pid, const ipc::WorkerInit& init,
                          ipc::SessionEnd* counts);
  void EndSession(std::string_view how, const ipc::SessionEnd& counts);

  const Runtime& rt_;
  const Config& cfg_;
  int client_;
  SessionFacts facts_;
  policy::Link link_;

  int front_sock_ = -1;
  pid_t front_pid_ = -1;
  State state_ = State::kAuth;
  unsigned counts_[16] = {};
  unsigned failures_ = 0;
  std::string challenge_;
  std::string tried_user_;  // for the end record of a session that failed
  Identity user_;
  std::string mech_;
  std::string pipelined_;
  int relay_fd_ = -1;
  bool proxied_;
  // The shared penalty file (monitor/penalty.h), and this client's key in
  // it (none for a peer without an IP address).
  std::optional<PenaltyTable> penalties_;
  std::optional<AddressKey> address_key_;
  PenaltySettings limits_;
  bool counted_ = false;  // a session slot holds this monitor
  Clock::time_point login_deadline_;
  std::string
      forbidden_call_;  // reported by a child its filter stopped  // the
                        // worker's end of the TLS relay, on a TLS link
  bool ended_ = false;
};

Monitor::~Monitor() {
  if (counted_) (void)penalties_->Leave(getpid());
}

int Monitor::Run() {
  if (proxied_ && !ReadProxyHeader()) return 0;
  if (!Admit()) return 0;
  AuditConnect(facts_);
  link_.tls = facts_.tls;
  link_.client_addr = facts_.client_addr;
  login_deadline_ = Clock::now() + std::chrono::seconds(cfg_.login_timeout_s);
  if (!StartFrontProcess()) {
    EndSession("front-start-failed", {});
    return 1;
  }

  bool logged_in = ServeFront();
  if (!logged_in) {
    int front_status = ReapFront();
    if (!ended_) EndSession(FrontEnding(front_status), {});
    return 0;
  }
  // On a clear link the front is done once it hands off.  On a TLS link
  // it relays for the worker until the session ends.
  if (relay_fd_ < 0) ReapFront();
  RunWorker();
  if (relay_fd_ >= 0) ReapFront();
  return 0;
}

// The balancer's header names the client; until it has been read no
// other process exists for the connection.  A LOCAL header (a health
// check) leaves the balancer as the peer.
bool Monitor::ReadProxyHeader() {
  proxy::Header h;
  std::string_view error;
  if (!proxy::ReadHeader(client_, kProxyHeaderMs, &h, &error)) {
    AuditRefused(facts_, "proxy-header", error);
    return false;
  }
  if (h.local) return true;
  facts_.proxy_addr = std::move(facts_.client_addr);
  facts_.client_addr = h.source;
  facts_.client_port = h.source_port;
  // The balancer's word on TLS counts only if the admin says so, and not
  // on a listener where the TLS is ours to do.
  if (h.ssl && cfg_.proxy_trust_tls && !facts_.implicit_tls) {
    facts_.tls = facts_.tls_by_proxy = true;
    facts_.tls_protocol = Sanitize(h.ssl_version, 32);
    facts_.tls_cipher = Sanitize(h.ssl_cipher, 64);
  }
  return true;
}

// Before the front is forked: a banned address, or one with too many
// sessions, is told so in one line and closed.  Without the penalty file
// nothing is served: the limits are not optional.
bool Monitor::Admit() {
  auto table = PenaltyTable::Open(cfg_.penalty_file);
  if (!table) {
    AuditRefused(facts_, "penalty-file", PenaltyErrorText(table.error()));
    Refuse("-ERR [SYS/TEMP] server busy, try again later");
    return false;
  }
  penalties_.emplace(std::move(*table));
  address_key_ = KeyForAddress(facts_.client_addr);
  if (!address_key_) return true;

  auto a = penalties_->Admit(*address_key_, getpid(), limits_, PenaltyNow());
  if (!a) {
    AuditRefused(facts_, "penalty-file", PenaltyErrorText(a.error()));
    Refuse("-ERR [SYS/TEMP] server busy, try again later");
    return false;
  }
  using V = PenaltyTable::Admission::Verdict;
  if (a->verdict == V::kBanned) {
    AuditRefused(
        facts_, "address-banned",
        fmt::format("for {} more seconds", a->banned_until - PenaltyNow()));
    Refuse(fmt::format("-ERR [SYS/TEMP] {}", kBannedText));
    return false;
  }
  if (a->verdict == V::kTooManySessions) {
    AuditRefused(facts_, "sessions-per-address",
                 fmt::format("{} sessions, limit {}", a->sessions,
                             limits_.max_sessions_per_address));
    Refuse("-ERR [SYS/TEMP] too many sessions from your address");
    return false;
  }
  counted_ = a->registered;
  return true;
}

// A client of a POP3S listener expects a handshake, not a line: it is
// only closed.
void Monitor::Refuse(std::string_view line) {
  if (facts_.implicit_tls) return;
  std::string out = std::string(line) + "\r\n";
  (void)!write(client_, out.data(), out.size());
}

// Another session from this address may have started a ban since this
// one began; a credential is then not even checked.
bool Monitor::BannedNow() {
  if (!address_key_) return false;
  auto until = penalties_->BannedUntil(*address_key_, limits_, PenaltyNow());
  return until && until->has_value();
}

bool Monitor::EndBanned(std::string_view user, std::string_view mech) {
  AuditAuth(facts_, user, mech, "refused", "address banned");
  tried_user_ = std::string(user);
  Verdict(ipc::AuthCode::kBanned, kBannedText);
  EndSession("address-banned", {});
  return true;
}

bool Monitor::StartFrontProcess() {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    return false;
  front_pid_ = StartFront(client_, sv[1], rt_.front_uid, rt_.front_gid,
                          cfg_.empty_dir, rt_.tls.get());
  close(sv[1]);
  front_sock_ = sv[0];
  if (front_pid_ < 0 || !ipc::PassCredentials(front_sock_)) return false;

  // The challenge goes into the greeting.  A POP3S client is greeted only
  // after its handshake, under the policy for TLS, so it gets one too if
  // APOP is allowed there.
  policy::Link greeted = link_;
  greeted.tls = link_.tls || facts_.implicit_tls;
  if (policy::ApopAllowed(cfg_, greeted).allowed)
    challenge_ = MakeChallenge(rt_.hostname);
  return ipc::SendMessage(front_sock_, MakeHello()).has_value();
}

// What the front may offer on the link as it is now.
ipc::Hello Monitor::MakeHello() {
  ipc::Hello hello;
  hello.session_id = facts_.id;
  hello.challenge = challenge_;
  hello.allow_apop =
      !challenge_.empty() && policy::ApopAllowed(cfg_, link_).allowed;
  hello.allow_user = policy::PasswordAllowed(cfg_, link_).allowed;
  hello.login_timeout_s = cfg_.login_timeout_s;
  hello.max_bad_commands = cfg_.max_bad_commands;
  hello.tls_available = rt_.tls && !link_.tls && !facts_.implicit_tls;
  hello.implicit_tls = facts_.implicit_tls && !link_.tls;
  hello.login_delay_s = cfg_.login_delay_s;
  hello.expire = cfg_.expire;
  return hello;
}

// Answers the front until a login is handed off (true) or the front is
// done without one (false).
bool Monitor::ServeFront() {
  int wait_ms = static_cast<int>(cfg_.login_timeout_s) * 1000 + kFrontGraceMs;
  Clock::time_point deadline =
      Clock::now() + std::chrono::milliseconds(wait_ms);
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - Clock::now());
    pollfd pfd{front_sock_, POLLIN, 0};
    int r =
        left.count() > 0 ? poll(&pfd, 1, static_cast<int>(left.count())) : 0;
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      AuditViolation(facts_, "front", "outlived the login timeout");
      kill(front_pid_, SIGKILL);
      EndSession("login-timeout", {});
      return false;
    }
    auto msg = ipc::Receive(front_sock_);
    if (!msg) {
      if (msg.error() != ipc::Error::kClosed) {
        AuditViolation(facts_, "front", ipc::ErrorName(msg.error()));
        kill(front_pid_, SIGKILL);
      }
      return false;
    }
    // The kernel says who sent it: the front we forked, confined as the
    // login user, and nothing that inherited or stole the other end.
    if (!msg->has_sender || msg->sender_pid != front_pid_ ||
        msg->sender_uid != rt_.front_uid) {
      if (msg->fd >= 0) close(msg->fd);
      Wipe(msg->body);
      AuditViolation(facts_, "front", "message from an unexpected sender");
      kill(front_pid_, SIGKILL);
      EndSession("front-violation", {});
      return false;
    }
    if (NoteForbiddenCall(*msg)) continue;
    bool handed_off = state_ == State::kAwaitHandoff;
    if (!Dispatch(*msg)) {
      kill(front_pid_, SIGKILL);
      return false;
    }
    if (handed_off) return true;
    if (ended_) return false;
  }
}

// A child's filter stopped a call and the child reports which before it
// dies; legal in any state, and it changes nothing but the record.
bool Monitor::NoteForbiddenCall(const ipc::Message& msg) {
  ipc::SandboxViolation v;
  if (!ipc::Decode(msg, &v)) return false;
  char* name =
      seccomp_syscall_resolve_num_arch(v.arch, static_cast<int>(v.syscall));
  forbidden_call_ = name ? name : fmt::format("{}", v.syscall);
  std::free(name);
  return true;
}

bool Monitor::Permitted(ipc::Type type) {
  for (const RequestRule& rule : kFrontRequests) {
    if (rule.type != type) continue;
    unsigned& n = counts_[static_cast<unsigned>(type) % 16];
    return rule.state == state_ &&
           (rule.max_count == 0 || ++n <= rule.max_count);
  }
  return false;
}

bool Monitor::Dispatch(ipc::Message& msg) {
  if (msg.fd >= 0) {
    close(msg.fd);
    msg.fd = -1;
    AuditViolation(facts_, "front", "sent a descriptor");
    Wipe(msg.body);
    EndSession("front-violation", {});
    return false;
  }
  if (!Permitted(msg.type)) {
    AuditViolation(facts_, "front",
                   fmt::format("request {} out of order",
                               static_cast<unsigned>(msg.type)));
    Wipe(msg.body);
    EndSession("front-violation", {});
    return false;
  }
  bool ok = false;
  switch (msg.type) {
    case ipc::Type::kAuthPass: ok = AnswerPass(msg); break;
    case ipc::Type::kAuthApop: ok = AnswerApop(msg); break;
    case ipc::Type::kRefusal: ok = AnswerRefusal(msg); break;
    case ipc::Type::kHandoff: ok = AnswerHandoff(msg); break;
    case ipc::Type::kTlsResult: ok = AnswerTlsResult(msg); break;
    default: break;
  }
  Wipe(msg.body);
  if (!ok && !ended_) {
    AuditViolation(facts_, "front", "malformed request");
    EndSession("front-violation", {});
  }
  return ok;
}

bool Monitor::Verdict(ipc::AuthCode code, std::string text, int pass_fd) {
  ipc::AuthResult r{code, std::move(text)};
  return ipc::Send(front_sock_, ipc::Type::kAuthResult, ipc::Encode(r), pass_fd)
      .has_value();
}

bool Monitor::HasApopSecret(const std::string& user) {
  auto secret = LookupSecret(cfg_.popauth_file, cfg_.popauth_key, user);
  if (!secret || !secret->has_value()) return false;
  Wipe(**secret);
  return true;
}

// Root, system accounts and names that do not resolve are refused before
// any secret is checked; the client cannot tell this from a wrong password.
bool Monitor::EligibleUser(const std::string& name, Identity* who,
                           std::string* reason) {
  if (!LookupIdentity(name, who)) {
    *reason = "unknown user";
    return false;
  }
  // 65534 is the kernel's overflow id ("nobody"), shared by whatever has
  // no owner of its own: never a mail user.
  if (who->uid == 0 || who->uid < cfg_.min_uid || who->uid == 65534) {
    *reason = "system account";
    return false;
  }
  return true;
}

// Every failure answers no sooner than fail_delay * 2^(n-1) after the
// request came, n counting the address's recent failures in every session
// (monitor/penalty.h): a guesser pays more each time, also across
// connections, and a fast "no such user" is not told apart from a slow
// hash.  The wait ends at the login timeout, which the front keeps too.
bool Monitor::Fail(std::string_view user, std::string_view mech,
                   std::string_view reason, Clock::time_point began) {
  failures_++;
  AuditAuth(facts_, user, mech, "fail", reason);
  tried_user_ = std::string(user);
  auto delay = FailureDelay(limits_, failures_);
  bool banned = false;
  if (address_key_) {
    auto f = penalties_->RecordFailure(*address_key_, limits_, PenaltyNow());
    if (f) {
      delay = std::max(delay, f->delay);
      banned = f->banned_until != 0;
      if (f->banned_now) AuditBan(facts_, f->failures, limits_.ban_time_s);
    } else {
      Log(LogLevel::kError, "penalty file {}: {}", cfg_.penalty_file,
          PenaltyErrorText(f.error()));
    }
  }
  std::this_thread::sleep_until(std::min(began + delay, login_deadline_));
  if (banned) {
    Verdict(ipc::AuthCode::kBanned, kBannedText);
    EndSession("address-banned", {});
    return true;
  }
  if (failures_ >= cfg_.max_failures) {
    Verdict(ipc::AuthCode::kEndSession,
            std::string(kFailedText) + "; too many failures, closing");
    EndSession("auth-failures", {});
    return true;
  }
  return Verdict(ipc::AuthCode::kFailed, kFailedText);
}

bool Monitor::Succeed(const Identity& who, std::string_view mech) {
  // RFC 2449 LOGIN-DELAY, told only to a client that proved who it is.
  if (cfg_.login_delay_s > 0) {
    auto wait = penalties_->CheckLogin(who.name, limits_, PenaltyNow());
    if (!wait) {
      Log(LogLevel::kError, "penalty file {}: {}", cfg_.penalty_file,
          PenaltyErrorText(wait.error()));
    } else if (*wait > 0) {
      AuditAuth(facts_, who.name, mech, "refused", "login delay");
      return Verdict(ipc::AuthCode::kLoginDelay,
                     fmt::format("wait {} more seconds before logging in "
                                 "again",
                                 *wait));
    }
  }
  AuditAuth(facts_, who.name, mech, "ok", "");
  user_ = who;
  mech_ = std::string(mech);
  state_ = State::kAwaitHandoff;
  // TLS the balancer ended leaves a clear stream here: nothing to relay.
  if (!link_.tls || facts_.tls_by_proxy) return Verdict(ipc::AuthCode::kOk, "");

  // The TLS session cannot leave the front, so the worker gets a plain
  // stream socket and the front relays; the front's end travels with the
  // verdict.
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return Verdict(ipc::AuthCode::kTempFail, "server busy, try again later");
  bool sent = Verdict(ipc::AuthCode::kOk, "", sv[0]);
  close(sv[0]);
  relay_fd_ = sv[1];
  return sent;
}

bool Monitor::AnswerPass(ipc::Message& msg) {
  Clock::time_point began = Clock::now();
  ipc::AuthPass req;
  if (!ipc::Decode(msg, &req) ||
      (req.mechanism != "pass" && req.mechanism != "plain")) {
    Wipe(req.password);
    return false;
  }
  const std::string& mech = req.mechanism;
  policy::Verdict v = policy::PasswordAllowed(cfg_, link_);
  if (!v.allowed) {
    Wipe(req.password);
    AuditAuth(facts_, req.user, mech, "refused", v.reason);
    return Verdict(ipc::AuthCode::kRefused, v.reason);
  }

  // Qpopper's rule: an account with an APOP secret must use APOP, so its
  // system password never crosses the network.  Refused before PAM runs.
  if (cfg_.apop_users_must_use_apop && HasApopSecret(req.user)) {
    Wipe(req.password);
    constexpr const char* kUseApop = "this account must log in with APOP";
    AuditAuth(facts_, req.user, mech, "refused", kUseApop);
    return Verdict(ipc::AuthCode::kRefused, kUseApop);
  }

  if (BannedNow()) {
    Wipe(req.password);
    return EndBanned(req.user, mech);
  }
  Identity who;
  std::string reason;
  if (!EligibleUser(req.user, &who, &reason)) {
    Wipe(req.password);
    return Fail(req.user, mech, reason, began);
  }
  PamOutcome pam =
      PamLogin(cfg_.pam_service, req.user, req.password, facts_.client_addr);
  if (pam.result == PamResult::kTempFail) {
    AuditAuth(facts_, req.user, mech, "fail", pam.reason);
    return Verdict(ipc::AuthCode::kTempFail,
                   "authentication is unavailable, try again later");
  }
  if (pam.result != PamResult::kOk)
    return Fail(req.user, mech, pam.reason, began);
  // PAM may have mapped the name; the account it settled on must pass the
  // same checks.
  if (pam.user != who.name && !EligibleUser(pam.user, &who, &reason))
    return Fail(req.user, mech, reason, began);
  return Succeed(who, mech);
}

bool Monitor::AnswerApop(const ipc::Message& msg) {
  Clock::time_point began = Clock::now();
  ipc::AuthApop req;
  if (!ipc::Decode(msg, &req)) return false;
  policy::Verdict v = policy::ApopAllowed(cfg_, link_);
  if (!v.allowed || challenge_.empty()) {
    AuditAuth(facts_, req.user, "apop", "refused", v.reason);
    return Verdict(ipc::AuthCode::kRefused, v.reason);
  }

  if (BannedNow()) return EndBanned(req.user, "apop");
  Identity who;
  std::string reason;
  if (!EligibleUser(req.user, &who, &reason))
    return Fail(req.user, "apop", reason, began);
  auto secret = LookupSecret(cfg_.popauth_file, cfg_.popauth_key, req.user);
  if (!secret) {
    Log(LogLevel::kError, "pop.auth: {}", PopAuthErrorText(secret.error()));
    AuditAuth(facts_, req.user, "apop", "fail", "pop.auth unusable");
    return Verdict(ipc::AuthCode::kTempFail,
                   "authentication is unavailable, try again later");
  }
  if (!secret->has_value())
    return Fail(req.user, "apop", "no pop.auth entry", began);
  bool match = CheckApopDigest(challenge_, **secret, req.digest);
  Wipe(**secret);
  if (!match) return Fail(req.user, "apop", "wrong digest", began);
  return Succeed(who, "apop");
}

bool Monitor::AnswerRefusal(const ipc::Message& msg) {
  ipc::Refusal req;
  if (!ipc::Decode(msg, &req)) return false;
  policy::Verdict v;
  if (req.mechanism == "pass" || req.mechanism == "plain")
    v = policy::PasswordAllowed(cfg_, link_);
  else if (req.mechanism == "apop")
    v = policy::ApopAllowed(cfg_, link_);
  else
    return false;
  // APOP allowed on the link but no challenge to answer: the greeting
  // went out in clear text, before STLS, when APOP was not allowed yet.
  if (req.mechanism == "apop" && v.allowed && challenge_.empty())
    v = {false,
         "APOP needs a challenge sent over TLS; use the POP3S port for APOP"};
  // The front only reports what the Hello ruled out; a report of an
  // allowed mechanism means the front is not the code we started.
  if (v.allowed) return false;
  AuditAuth(facts_, req.user, req.mechanism, "refused", v.reason);
  return Verdict(ipc::AuthCode::kRefused, v.reason);
}

bool Monitor::AnswerTlsResult(const ipc::Message& msg) {
  ipc::TlsResult r;
  if (!ipc::Decode(msg, &r)) return false;
  // Only a front that was told it may run a handshake reports one.
  bool expected = facts_.implicit_tls || (rt_.tls && !link_.tls);
  if (!expected || link_.tls) return false;
  if (!r.ok) {
    AuditTls(facts_, r.error.empty() ? "handshake failed" : r.error);
    EndSession("tls-failed", {});
    return true;
  }
  link_.tls = facts_.tls = true;
  facts_.tls_protocol = Sanitize(r.protocol, 32);
  facts_.tls_cipher = Sanitize(r.cipher, 64);
  AuditTls(facts_, "");
  return ipc::SendMessage(front_sock_, MakeHello()).has_value();
}

bool Monitor::AnswerHandoff(const ipc::Message& msg) {
  ipc::Handoff h;
  if (!ipc::Decode(msg, &h)) return false;
  pipelined_ = std::move(h.pipelined);
  return true;
}

// Waits for the front to exit; records a kill.  Returns its exit status,
// or -1 if a signal ended it.
int Monitor::ReapFront() {
  close(front_sock_);
  front_sock_ = -1;
  int status = 0;
  while (waitpid(front_pid_, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(status)) {
    if (WTERMSIG(status) != SIGKILL || state_ != State::kAuth)
      AuditChildKilled(facts_, "front", tried_user_, WTERMSIG(status),
                       forbidden_call_);
    return -1;
  }
  return WEXITSTATUS(status);
}

void Monitor::RunWorker() {
  ipc::SessionEnd counts;
  auto mailbox = ExpandMailboxPath(
      cfg_.format == MailboxFormatSetting::kMbox ? cfg_.mbox : cfg_.maildir,
      user_.name, user_.home);
  int sv[2];
  if (!mailbox ||
      socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    Log(LogLevel::kError, "session {}: cannot prepare the mailbox of {}",
        facts_.id, user_.name);
    static constexpr char kMsg[] = "-ERR [SYS/TEMP] mailbox unavailable\r\n";
    (void)!write(client_, kMsg, sizeof kMsg - 1);
    counts.reason = ipc::EndReason::kMailboxError;
    EndSession("mailbox-error", counts);
    return;
  }
  int stream = relay_fd_ >= 0 ? relay_fd_ : client_;
  pid_t pid = StartWorker(rt_.config.worker_path, stream, sv[1], user_);
  close(sv[1]);
  close(client_);
  client_ = -1;
  if (relay_fd_ >= 0) close(relay_fd_);
  AuditLogin(facts_, user_.name, user_.uid, mech_);

  ipc::WorkerInit init;
  init.session_id = facts_.id;
  init.user = user_.name;
  init.mailbox = *mailbox;
  init.format = cfg_.format == MailboxFormatSetting::kMbox
                    ? ipc::MailboxFormat::kMbox
                    : ipc::MailboxFormat::kMaildir;
  init.pipelined = std::move(pipelined_);
  init.idle_timeout_s = cfg_.idle_timeout_s;
  init.max_bad_commands = cfg_.max_bad_commands;
  init.login_delay_s = cfg_.login_delay_s;
  init.expire = cfg_.expire;

  std::string how = "worker-error";
  if (pid > 0 && ipc::PassCredentials(sv[0]) && ipc::SendMessage(sv[0], init))
    how = ServeWorker(sv[0], pid, init, &counts);
  close(sv[0]);
  int status = 0;
  while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (pid > 0 && WIFSIGNALED(status)) {
    AuditChildKilled(facts_, "worker", user_.name, WTERMSIG(status),
                     forbidden_call_);
    how = "worker-killed";
  }
  EndSession(how, counts);
}

// The worker's request table: spool operations, only for an mbox, any
// number of times; then exactly one SessionEnd.  Anything else, or a
// message from any process but the worker, ends the session.
std::string Monitor::ServeWorker(int sock, pid_t pid,
                                 const ipc::WorkerInit& init,
                                 ipc::SessionEnd* counts) {
  std::optional<SpoolService> spool;
  if (init.format == ipc::MailboxFormat::kMbox)
    spool.emplace(init.mailbox, user_);
  for (;;) {
    auto msg = ipc::Receive(sock);
    if (!msg) return "worker-error";
    bool from_worker = msg->has_sender && msg->sender_pid == pid &&
                       msg->sender_uid == user_.uid;
    if (msg->fd >= 0) close(msg->fd);
    if (!from_worker) {
      AuditViolation(facts_, "worker", "message from an unexpected sender");
      return "worker-violation";
    }
    if (NoteForbiddenCall(*msg)) continue;
    ipc::SpoolRequest req;
    if (spool && ipc::Decode(*msg, &req)) {
      int fd = -1;
      ipc::SpoolReply reply = spool->Handle(req.op, &fd);
      auto sent =
          ipc::Send(sock, ipc::Type::kSpoolReply, ipc::Encode(reply), fd);
      if (fd >= 0) close(fd);
      if (!sent) return "worker-error";
      continue;
    }
    if (ipc::Decode(*msg, counts))
      return std::string(ipc::EndReasonName(counts->reason));
    AuditViolation(facts_, "worker",
                   fmt::format("request {} out of order",
                               static_cast<unsigned>(msg->type)));
    kill(pid, SIGKILL);
    return "worker-violation";
  }
}

void Monitor::EndSession(std::string_view how, const ipc::SessionEnd& counts) {
  if (ended_) return;
  ended_ = true;
  AuditEnd(facts_, user_.name.empty() ? tried_user_ : user_.name, how, counts);
}

}  // namespace

void DescribeConnection(int fd, SessionFacts* facts) {
  facts->id = NewSessionId();
  facts->start = Clock::now();
  auto describe = [](const sockaddr_storage& ss, std::string* addr,
                     unsigned* port) {
    char buf[INET6_ADDRSTRLEN] = "unknown";
    if (ss.ss_family == AF_INET) {
      auto* sin = reinterpret_cast<const sockaddr_in*>(&ss);
      inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof buf);
      *port = ntohs(sin->sin_port);
    } else if (ss.ss_family == AF_INET6) {
      auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&ss);
      inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof buf);
      *port = ntohs(sin6->sin6_port);
    } else if (ss.ss_family == AF_UNIX) {
      std::snprintf(buf, sizeof buf, "local");
    }
    *addr = buf;
  };
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0)
    describe(ss, &facts->client_addr, &facts->client_port);
  else
    facts->client_addr = "unknown";
  len = sizeof ss;
  ss = {};
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0)
    describe(ss, &facts->server_addr, &facts->server_port);
  else
    facts->server_addr = "unknown";
}

std::expected<Runtime, std::string> PrepareRuntime(const Config& config) {
  Runtime rt;
  rt.config = config;
  rt.hostname = config.hostname;
  if (rt.hostname.empty()) {
    char buf[256] = {};
    if (gethostname(buf, sizeof buf - 1) == 0) rt.hostname = buf;
    if (rt.hostname.empty()) rt.hostname = "localhost";
  }

  Identity front;
  if (!LookupIdentity(config.front_user, &front))
    return std::unexpected(fmt::format(
        "the front user '{}' does not exist; create it with "
        "'useradd --system --no-create-home --shell /usr/sbin/nologin {}'",
        config.front_user, config.front_user));
  if (front.uid == 0 || front.gid == 0)
    return std::unexpected(
        fmt::format("the front user '{}' must not be root", front.name));
  rt.front_uid = front.uid;
  rt.front_gid = front.gid;

  // The front's root must be empty and not writable by it: mkdir -p with
  // root ownership, then check.
  std::string path;
  for (std::size_t i = 1; i <= config.empty_dir.size(); i++) {
    if (i == config.empty_dir.size() || config.empty_dir[i] == '/') {
      path = config.empty_dir.substr(0, i);
      if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST)
        return std::unexpected(
            fmt::format("cannot create {}: {}", path, std::strerror(errno)));
    }
  }
  struct stat st;
  if (stat(config.empty_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) ||
      st.st_uid != 0 || (st.st_mode & 022) != 0)
    return std::unexpected(fmt::format(
        "{} must be a directory owned by root, writable by no one else",
        config.empty_dir));

  if (policy::LandlockAbi() == 0) {
    if (config.landlock == LandlockSetting::kRequired)
      return std::unexpected(std::string(
          "privsep.landlock = \"required\", but this kernel has no "
          "Landlock (enable CONFIG_SECURITY_LANDLOCK and lsm=landlock)"));
    Log(LogLevel::kWarning,
        "this kernel has no Landlock: the front and the worker are confined "
        "by seccomp, their user ids and the front's empty root only");
  }

  if (!config.tls_certificate.empty()) {
    front::TlsSettings tls{config.tls_certificate, config.tls_private_key,
                           config.tls_min_protocol, config.tls_ciphers,
                           config.tls_ciphersuites};
    auto ctx = front::MakeServerContext(tls);
    if (!ctx) return std::unexpected("TLS: " + ctx.error());
    rt.tls = std::move(*ctx);
  }

  if (access(config.worker_path.c_str(), X_OK) != 0)
    return std::unexpected(fmt::format("the worker {} is not executable: {}",
                                       config.worker_path,
                                       std::strerror(errno)));
  return rt;
}

int RunMonitor(const Runtime& rt, int client_fd, SessionFacts facts,
               bool proxy_protocol) {
  Monitor m(rt, client_fd, std::move(facts), proxy_protocol);
  return m.Run();
}

}  // namespace popguard::monitor
