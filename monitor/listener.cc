#include "monitor/listener.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include <fmt/ranges.h>

#include "build_config.h"
#include "common/log.h"
#include "monitor/penalty.h"
#include "policy/auth_policy.h"

namespace popguard::monitor {
namespace {

constexpr int kBacklog = 128;

// "host:port" or "[v6]:port" to a bound, listening socket.
std::expected<int, std::string> Bind(const std::string& spec) {
  std::size_t colon = spec.rfind(':');
  if (colon == std::string::npos || colon == 0)
    return std::unexpected("listen address '" + spec + "' lacks a port");
  std::string host = spec.substr(0, colon);
  std::string port = spec.substr(colon + 1);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0)
    return std::unexpected(
        fmt::format("listen address '{}': {}", spec, gai_strerror(rc)));

  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  bool ok = fd >= 0 &&
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0;
  // "[::]" and "0.0.0.0" are listed separately; each binds only its own.
  if (ok && res->ai_family == AF_INET6)
    ok = setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) == 0;
  ok = ok && bind(fd, res->ai_addr, res->ai_addrlen) == 0 &&
       listen(fd, kBacklog) == 0;
  int err = errno;
  freeaddrinfo(res);
  if (!ok) {
    if (fd >= 0) close(fd);
    return std::unexpected(
        fmt::format("cannot listen on {}: {}", spec, std::strerror(err)));
  }
  return fd;
}

// A listening socket, whether its clients start with TLS (POP3S), and
// whether they come through a balancer that sends a PROXY header first.
struct Socket {
  int fd;
  bool implicit_tls;
  bool proxy = false;
};

// Every monitor opens the penalty file and refuses service without it;
// the listener makes it (or finds it unusable) once, at start and on a
// reload, so that a bad path stops the daemon rather than every session.
std::optional<std::string> CheckPenaltyFile(const Config& c) {
  auto table = PenaltyTable::Open(c.penalty_file);
  if (table) return std::nullopt;
  return fmt::format("auth.penalty_file {}: {}", c.penalty_file,
                     PenaltyErrorText(table.error()));
}

// Every response, status line, body and terminator, leaves in one write;
// Nagle's algorithm would only hold the last short segment of each back
// until the client's delayed ACK (about 40 ms), message after message.
// Most visible on TLS links, where the front writes record by record.
// Not a TCP socket (inetd over a unix socket): the error is harmless.
void SetNoDelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

class Listener {
 public:
  Listener(std::string config_path, Runtime rt,
           std::vector<ActivatedSocket> activated)
      : path_(std::move(config_path)),
        rt_(std::move(rt)),
        activated_(!activated.empty()) {
    for (const ActivatedSocket& a : activated)
      listeners_.push_back({a.fd, a.implicit_tls, a.proxy});
  }
  int Run();

 private:
  bool BindAll();
  void CloseAll();
  void Accept(const Socket& lsock);
  bool TrustedBalancer(int fd);
  void Reap();
  void Reload();

  std::string path_;
  Runtime rt_;
  std::vector<Socket> listeners_;
  // The sockets came from systemd: the configured addresses are not used.
  bool activated_ = false;
  int sigfd_ = -1;
  unsigned children_ = 0;
  bool stopping_ = false;
};

bool Listener::BindAll() {
  std::vector<Socket> socks;
  auto bind_list = [&](const std::vector<std::string>& specs, bool tls,
                       bool proxy) {
    for (const std::string& spec : specs) {
      auto fd = Bind(spec);
      if (!fd) {
        Log(LogLevel::kError, "{}", fd.error());
        return false;
      }
      socks.push_back({*fd, tls, proxy});
    }
    return true;
  };
  const Config& c = rt_.config;
  if (!bind_list(c.listen, false, false) ||
      !bind_list(c.listen_tls, true, false) ||
      !bind_list(c.proxy_listen, false, true) ||
      !bind_list(c.proxy_listen_tls, true, true)) {
    for (const Socket& s : socks) close(s.fd);
    return false;
  }
  CloseAll();
  listeners_ = std::move(socks);
  return true;
}

void Listener::CloseAll() {
  for (const Socket& s : listeners_) close(s.fd);
  listeners_.clear();
}

void Listener::Accept(const Socket& lsock) {
  int fd = accept4(lsock.fd, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) return;
  SetNoDelay(fd);
  if (children_ >= rt_.config.max_sessions) {
    static constexpr char kBusy[] =
        "-ERR [SYS/TEMP] too many sessions, try again later\r\n";
    (void)!write(fd, kBusy, sizeof kBusy - 1);
    Log(LogLevel::kWarning, "event=refused reason=max-sessions limit={}",
        rt_.config.max_sessions);
    close(fd);
    return;
  }
  // Only a listed balancer may say who the client is; anyone else on a
  // proxy listener is closed unread, before a process is spent on it.
  if (lsock.proxy && !TrustedBalancer(fd)) {
    close(fd);
    return;
  }
  pid_t pid = fork();
  if (pid == 0) {
    CloseAll();
    close(sigfd_);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    SessionFacts facts;
    DescribeConnection(fd, &facts);
    facts.implicit_tls = lsock.implicit_tls;
    _exit(RunMonitor(rt_, fd, std::move(facts), lsock.proxy));
  }
  if (pid > 0)
    children_++;
  else
    Log(LogLevel::kError, "fork: {}", std::strerror(errno));
  close(fd);
}

bool Listener::TrustedBalancer(int fd) {
  SessionFacts facts;
  DescribeConnection(fd, &facts);
  if (policy::AddressInNetworks(facts.client_addr, rt_.config.proxy_trusted))
    return true;
  AuditRefused(facts, "proxy-untrusted",
               "not in server.proxy_trusted; closed unread");
  return false;
}

void Listener::Reap() {
  int status;
  while (waitpid(-1, &status, WNOHANG) > 0) {
    if (children_ > 0) children_--;
  }
}

void Listener::Reload() {
  auto config = LoadConfig(path_);
  if (!config) {
    AuditReload(path_, config.error().message);
    return;
  }
  auto rt = PrepareRuntime(*config);
  if (!rt) {
    AuditReload(path_, rt.error());
    return;
  }
  auto audit = OpenAuditSinks(*config);
  if (!audit) {
    AuditReload(path_, audit.error());
    return;
  }
  if (auto err = CheckPenaltyFile(rt->config)) {
    AuditReload(path_, *err);
    return;
  }
  bool rebind = !activated_ &&
                (rt->config.listen != rt_.config.listen ||
                 rt->config.listen_tls != rt_.config.listen_tls ||
                 rt->config.proxy_listen != rt_.config.proxy_listen ||
                 rt->config.proxy_listen_tls != rt_.config.proxy_listen_tls);
  Runtime old = std::move(rt_);
  rt_ = std::move(*rt);
  if (rebind && !BindAll()) {
    rt_ = std::move(old);
    AuditReload(path_, "cannot bind");
    return;
  }
  InstallAuditSinks(std::move(*audit));
  for (const std::string& w : rt_.config.warnings)
    Log(LogLevel::kWarning, "config: {}", w);
  AuditReload(path_, "");
}

int Listener::Run() {
  sigset_t mask;
  sigemptyset(&mask);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&mask, sig);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  signal(SIGPIPE, SIG_IGN);
  sigfd_ = signalfd(-1, &mask, SFD_CLOEXEC);
  if (auto err = CheckPenaltyFile(rt_.config)) {
    Log(LogLevel::kError, "{}", *err);
    return 1;
  }
  if (sigfd_ < 0 || (!activated_ && !BindAll())) return 1;
  if (activated_) {
    std::vector<std::string> plain, tls;
    for (const Socket& s : listeners_)
      (s.implicit_tls ? tls : plain).push_back(SocketAddress(s.fd));
    Log(LogLevel::kNotice,
        "sockets from systemd; the listen addresses of {} are not used", path_);
    AuditStart(plain, tls, POPGUARD_VERSION);
  } else {
    AuditStart(rt_.config.listen, rt_.config.listen_tls, POPGUARD_VERSION);
  }

  while (!stopping_ || children_ > 0) {
    std::vector<pollfd> fds{{sigfd_, POLLIN, 0}};
    for (const Socket& s : listeners_) fds.push_back({s.fd, POLLIN, 0});
    if (poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    if (fds[0].revents & POLLIN) {
      signalfd_siginfo si;
      if (read(sigfd_, &si, sizeof si) == sizeof si) {
        if (si.ssi_signo == SIGCHLD) {
          Reap();
        } else if (si.ssi_signo == SIGHUP) {
          Reload();
        } else if (!stopping_) {
          stopping_ = true;
          CloseAll();
          AuditStop(children_);
        }
      }
      continue;
    }
    std::vector<Socket> ready;
    for (std::size_t i = 1; i < fds.size(); i++)
      if (fds[i].revents & POLLIN) ready.push_back(listeners_[i - 1]);
    for (const Socket& s : ready) Accept(s);
  }
  return 0;
}

}  // namespace

int RunListener(const std::string& config_path, Runtime rt,
                std::vector<ActivatedSocket> activated) {
  Listener l(config_path, std::move(rt), std::move(activated));
  return l.Run();
}

int RunInetd(const Runtime& rt, bool implicit_tls) {
  signal(SIGPIPE, SIG_IGN);
  SetNoDelay(0);
  // stdout is the same connection; the monitor and its children use
  // descriptor 0 only, and nothing may be printed to 1 or 2 by accident.
  SessionFacts facts;
  DescribeConnection(0, &facts);
  facts.implicit_tls = implicit_tls;
  return RunMonitor(rt, 0, std::move(facts));
}

}  // namespace popguard::monitor
