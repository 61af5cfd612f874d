// popguard: the POP3 server's entry point, running as root.  It reads the
// configuration and becomes the listener (standalone) or the monitor of a
// single connection (inetd mode).
#include <fcntl.h>
#include <getopt.h>
#include <syslog.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "build_config.h"
#include "common/config.h"
#include "common/log.h"
#include "monitor/audit.h"
#include "monitor/audit_chain.h"
#include "monitor/listener.h"
#include "monitor/monitor.h"

namespace {

constexpr const char* kUsage =
    "usage: popguard [-c FILE] [-f] [--inetd] [--check-config] [--debug]\n"
    "       popguard --verify-audit FILE\n"
    "  -c, --config FILE  configuration file (default " POPGUARD_CONFIG_PATH
    ")\n"
    "  -f, --foreground   stay in the foreground and log to stderr\n"
    "      --inetd        serve one connection on stdin (xinetd, inetd)\n"
    "      --tls          with --inetd: the connection starts with TLS (995)\n"
    "      --check-config print the effective settings and warnings\n"
    "      --debug        log debug messages\n"
    "      --verify-audit FILE  check the chain of a JSON-lines audit file\n"
    "      --version      print the version\n";

struct Options {
  std::string config = POPGUARD_CONFIG_PATH;
  bool foreground = false;
  bool inetd = false;
  bool inetd_tls = false;
  bool check = false;
  bool debug = false;
  std::string verify_audit;
};

int ParseOptions(int argc, char** argv, Options* o) {
  enum { kInetd = 256, kTls, kCheck, kDebug, kVersion, kVerifyAudit };
  static const option kLong[] = {
      {"config", required_argument, nullptr, 'c'},
      {"foreground", no_argument, nullptr, 'f'},
      {"inetd", no_argument, nullptr, kInetd},
      {"tls", no_argument, nullptr, kTls},
      {"check-config", no_argument, nullptr, kCheck},
      {"debug", no_argument, nullptr, kDebug},
      {"version", no_argument, nullptr, kVersion},
      {"verify-audit", required_argument, nullptr, kVerifyAudit},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0},
  };
  for (int c; (c = getopt_long(argc, argv, "c:fh", kLong, nullptr)) != -1;) {
    switch (c) {
      case 'c': o->config = optarg; break;
      case 'f': o->foreground = true; break;
      case kInetd: o->inetd = true; break;
      case kTls: o->inetd_tls = true; break;
      case kCheck: o->check = true; break;
      case kDebug: o->debug = true; break;
      case kVerifyAudit: o->verify_audit = optarg; break;
      case kVersion: std::printf("popguard %s\n", POPGUARD_VERSION); return 0;
      case 'h': std::fputs(kUsage, stdout); return 0;
      default: std::fputs(kUsage, stderr); return 2;
    }
  }
  if (optind != argc || (o->inetd_tls && !o->inetd)) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  return -1;
}

// Prints whether the chain of a JSON-lines audit file holds: 0 if it
// does, 1 at the first line where it breaks, 2 if the file cannot be read.
int VerifyAudit(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    std::fprintf(stderr, "popguard: %s: %s\n", path.c_str(),
                 std::strerror(errno));
    return 2;
  }
  popguard::monitor::ChainReport r = popguard::monitor::VerifyChain(fd);
  close(fd);
  if (r.intact) {
    std::printf("chain intact: %llu records\n",
                static_cast<unsigned long long>(r.records));
    return 0;
  }
  std::printf("chain broken at line %llu: %s\n",
              static_cast<unsigned long long>(r.line), r.why.c_str());
  return 1;
}

// The classic detach: a new session, no terminal, "/" as the directory.
bool Daemonize() {
  pid_t pid = fork();
  if (pid < 0) return false;
  if (pid > 0) _exit(0);
  if (setsid() < 0) return false;
  if (chdir("/") != 0) return false;
  FILE* null = std::freopen("/dev/null", "r+", stdin);
  return null && dup2(0, 1) == 1 && dup2(0, 2) == 2;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace popguard;
  Options opt;
  if (int rc = ParseOptions(argc, argv, &opt); rc >= 0) return rc;
  if (!opt.verify_audit.empty()) return VerifyAudit(opt.verify_audit);

  auto config = LoadConfig(opt.config);
  if (!config) {
    std::fprintf(stderr, "popguard: %s\n", config.error().message.c_str());
    return 1;
  }
  if (opt.check) {
    std::fputs(DescribeConfig(*config).c_str(), stdout);
    for (const std::string& w : config->warnings)
      std::fprintf(stderr, "warning: %s\n", w.c_str());
    return 0;
  }
  if (geteuid() != 0) {
    std::fputs("popguard: must be started as root\n", stderr);
    return 1;
  }

  InitLog("popguard", opt.foreground, FacilityFromName(config->syslog_facility),
          opt.debug);
  auto audit = monitor::OpenAuditSinks(*config);
  if (!audit) {
    Log(LogLevel::kError, "{}", audit.error());
    if (!opt.foreground)
      std::fprintf(stderr, "popguard: %s\n", audit.error().c_str());
    return 1;
  }
  monitor::InstallAuditSinks(std::move(*audit));
  auto rt = monitor::PrepareRuntime(*config);
  if (!rt) {
    Log(LogLevel::kError, "{}", rt.error());
    if (!opt.foreground)
      std::fprintf(stderr, "popguard: %s\n", rt.error().c_str());
    return 1;
  }
  for (const std::string& w : config->warnings)
    Log(LogLevel::kWarning, "config: {}", w);

  if (opt.inetd) {
    if (opt.inetd_tls && !rt->tls) {
      Log(LogLevel::kError, "--tls needs [tls] certificate and private_key");
      return 1;
    }
    return monitor::RunInetd(*rt, opt.inetd_tls);
  }
  // Before Daemonize: the sockets are for this process id.
  auto activated = monitor::TakeActivatedSockets(getpid());
  if (!activated) {
    Log(LogLevel::kError, "{}", activated.error());
    if (!opt.foreground)
      std::fprintf(stderr, "popguard: %s\n", activated.error().c_str());
    return 1;
  }
  if (!opt.foreground && !Daemonize()) {
    Log(LogLevel::kError, "cannot detach from the terminal");
    return 1;
  }
  return monitor::RunListener(opt.config, std::move(*rt),
                              std::move(*activated));
}
