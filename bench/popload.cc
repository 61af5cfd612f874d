// popload: the POP3 client that bench/run-all drives.
//
// It is small and fast on purpose: the benchmarks measure servers, so the
// client must not be what bounds them.  One process, blocking sockets, one
// thread per concurrent session, large reads, and a multi-line reader that
// scans for the terminator with memmem instead of splitting lines.
// `popload selftest` measures the client's own ceiling against an
// in-process server that sends prebuilt responses.
//
// Every mode prints one line of key=value pairs on standard output (read by
// run-all) and errors on standard error; the exit status is 0 only if every
// session succeeded.
//
// Build: g++ -O2 -std=c++23 popload.cc -o popload -lssl -lcrypto -pthread

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Reads and writes are large so that system calls do not bound RETR.
constexpr std::size_t kBufferSize = 1 << 20;
constexpr int kIoTimeoutS = 120;
// sessions mode gives up after this many failed sessions.
constexpr int kMaxFailures = 10;

std::mutex error_mutex;
int errors_printed = 0;

// Prints the first few errors only: a benchmark of 2,000 sessions that all
// fail the same way should say so once, not 2,000 times.
void ReportError(const std::string& what) {
  std::lock_guard lock(error_mutex);
  if (errors_printed++ < 5) std::fprintf(stderr, "popload: %s\n", what.c_str());
}

struct Options {
  std::string mode;
  std::string host = "127.0.0.1";
  int port = 110;
  bool tls = false;
  std::string auth = "apop";  // "apop" or "pass" (USER/PASS)
  std::string users_file;     // lines "NAME SECRET"
  std::string user;
  std::string secret;
  int count = 1;
  int concurrency = 1;
  int max_seconds = 3600;
  std::string cert;  // selftest --tls
  std::string key;
};

// A connection to a POP3 server, clear or TLS, with its own read buffer.
class Conn {
 public:
  Conn() : buf_(kBufferSize) {}
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  ~Conn() { Close(); }

  bool Connect(const Options& o, SSL_CTX* ctx, std::string* err) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return Fail(err, "socket");
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<std::uint16_t>(o.port));
    if (inet_pton(AF_INET, o.host.c_str(), &sa.sin_addr) != 1) {
      *err = "bad host " + o.host;
      return false;
    }
    SetOptions(fd_);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
      return Fail(err, "connect");
    }
    if (ctx != nullptr) {
      ssl_ = SSL_new(ctx);
      SSL_set_fd(ssl_, fd_);
      if (SSL_connect(ssl_) != 1) {
        *err = "TLS handshake failed";
        return false;
      }
    }
    return true;
  }

  // "TLSv1.3/TLS_AES_256_GCM_SHA384", or empty on a clear link.
  std::string Cipher() const {
    if (ssl_ == nullptr) return "";
    return std::string(SSL_get_version(ssl_)) + "/" +
           SSL_CIPHER_get_name(SSL_get_current_cipher(ssl_));
  }

  // Takes a connected (and, if ssl is given, handshaken) descriptor.
  void Adopt(int fd, SSL* ssl) {
    fd_ = fd;
    ssl_ = ssl;
  }

  static void SetOptions(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    timeval tv{kIoTimeoutS, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }

  void Close() {
    if (ssl_ != nullptr) {
      SSL_free(ssl_);
      ssl_ = nullptr;
    }
    if (fd_ >= 0) {
      close(fd_);
      fd_ = -1;
    }
  }

  bool Write(std::string_view data) {
    while (!data.empty()) {
      long n;
      if (ssl_ != nullptr) {
        n = SSL_write(ssl_, data.data(), static_cast<int>(data.size()));
        if (n <= 0) return false;
      } else {
        n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
      }
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  // One line without its CRLF.
  bool ReadLine(std::string* line) {
    for (;;) {
      char* begin = buf_.data() + start_;
      void* nl = std::memchr(begin, '\n', end_ - start_);
      if (nl != nullptr) {
        std::size_t len = static_cast<char*>(nl) - begin;
        line->assign(begin, len);
        if (!line->empty() && line->back() == '\r') line->pop_back();
        start_ += len + 1;
        return true;
      }
      if (!Fill()) return false;
    }
  }

  // The body of a multi-line response, after its status line; counts the
  // octets before the terminating ".CRLF" (dot-stuffing included).
  bool ReadMultiline(std::uint64_t* octets) {
    *octets = 0;
    while (end_ - start_ < 3) {
      if (!Fill()) return false;
    }
    if (std::memcmp(buf_.data() + start_, ".\r\n", 3) == 0) {
      start_ += 3;
      return true;
    }
    static constexpr char kEnd[] = "\r\n.\r\n";
    for (;;) {
      char* begin = buf_.data() + start_;
      std::size_t avail = end_ - start_;
      void* hit = memmem(begin, avail, kEnd, 5);
      if (hit != nullptr) {
        std::size_t body = static_cast<char*>(hit) - begin + 2;
        *octets += body;
        start_ += body + 3;
        return true;
      }
      // Keep the last four octets: the terminator may straddle two reads.
      if (avail > 4) {
        *octets += avail - 4;
        start_ += avail - 4;
      }
      if (!Fill()) return false;
    }
  }

  // Sends a command and reads its status line; true on "+OK".
  bool Command(std::string_view cmd, std::string* reply) {
    std::string line(cmd);
    line += "\r\n";
    if (!Write(line) || !ReadLine(reply)) {
      *reply = "connection lost after " + std::string(cmd.substr(0, 4));
      return false;
    }
    return reply->starts_with("+OK");
  }

  // Waits for the server to close (after QUIT), so that the next session
  // for the same user does not race the previous one's mailbox lock.
  void WaitForClose() {
    char c[256];
    for (;;) {
      long n = ssl_ != nullptr ? SSL_read(ssl_, c, sizeof c)
                               : recv(fd_, c, sizeof c, 0);
      if (n <= 0) return;
    }
  }

 private:
  static bool Fail(std::string* err, const char* what) {
    *err = std::string(what) + ": " + std::strerror(errno);
    return false;
  }

  bool Fill() {
    if (start_ > 0) {
      std::memmove(buf_.data(), buf_.data() + start_, end_ - start_);
      end_ -= start_;
      start_ = 0;
    }
    if (end_ == buf_.size()) return false;  // a line longer than 1 MiB
    long n;
    if (ssl_ != nullptr) {
      n = SSL_read(ssl_, buf_.data() + end_,
                   static_cast<int>(buf_.size() - end_));
    } else {
      do {
        n = recv(fd_, buf_.data() + end_, buf_.size() - end_, 0);
      } while (n < 0 && errno == EINTR);
    }
    if (n <= 0) return false;
    end_ += static_cast<std::size_t>(n);
    return true;
  }

  int fd_ = -1;
  SSL* ssl_ = nullptr;
  std::vector<char> buf_;
  std::size_t start_ = 0;
  std::size_t end_ = 0;
};

std::string Md5Hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_md5(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

struct User {
  std::string name;
  std::string secret;
};

// Reads the greeting and logs in; on failure `err` says why.
bool Login(Conn& c, const Options& o, const User& u, std::string* err) {
  std::string greeting;
  if (!c.ReadLine(&greeting) || !greeting.starts_with("+OK")) {
    *err = "bad greeting: " + greeting;
    return false;
  }
  std::string reply;
  if (o.auth == "apop") {
    std::size_t lt = greeting.find('<');
    std::size_t gt = greeting.find('>', lt);
    if (lt == std::string::npos || gt == std::string::npos) {
      *err = "no APOP challenge in greeting: " + greeting;
      return false;
    }
    std::string challenge = greeting.substr(lt, gt - lt + 1);
    if (!c.Command("APOP " + u.name + " " + Md5Hex(challenge + u.secret),
                   &reply)) {
      *err = "APOP " + u.name + ": " + reply;
      return false;
    }
    return true;
  }
  if (!c.Command("USER " + u.name, &reply) ||
      !c.Command("PASS " + u.secret, &reply)) {
    *err = "USER/PASS " + u.name + ": " + reply;
    return false;
  }
  return true;
}

bool Quit(Conn& c) {
  std::string reply;
  bool ok = c.Command("QUIT", &reply);
  c.WaitForClose();
  return ok;
}

SSL_CTX* ClientContext() {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  // The benchmark's certificate is self-signed; nothing is verified on
  // loopback.
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  return ctx;
}

// open: connect, log in, UIDL, QUIT; times to the end of the UIDL listing.
int RunOpen(const Options& o, SSL_CTX* ctx) {
  Conn c;
  std::string err, reply;
  auto t0 = Clock::now();
  if (!c.Connect(o, ctx, &err) || !Login(c, o, {o.user, o.secret}, &err)) {
    ReportError(err);
    return 1;
  }
  auto t_login = Clock::now();
  if (!c.Command("UIDL", &reply)) {
    ReportError("UIDL: " + reply);
    return 1;
  }
  // Line by line, to count the messages listed.
  long listed = 0;
  std::string line;
  for (;;) {
    if (!c.ReadLine(&line)) {
      ReportError("UIDL listing cut short");
      return 1;
    }
    if (line == ".") break;
    ++listed;
  }
  auto t_uidl = Clock::now();
  Quit(c);
  std::printf("total_s=%.4f login_s=%.4f uidl_s=%.4f messages=%ld\n",
              Seconds(t0, t_uidl), Seconds(t0, t_login),
              Seconds(t_login, t_uidl), listed);
  return 0;
}

// retr: log in, STAT, RETR every message, QUIT.
int RunRetr(const Options& o, SSL_CTX* ctx) {
  Conn c;
  std::string err, reply;
  if (!c.Connect(o, ctx, &err) || !Login(c, o, {o.user, o.secret}, &err)) {
    ReportError(err);
    return 1;
  }
  if (!c.Command("STAT", &reply)) {
    ReportError("STAT: " + reply);
    return 1;
  }
  long messages = std::strtol(reply.c_str() + 3, nullptr, 10);
  std::uint64_t total = 0;
  auto t0 = Clock::now();
  for (long i = 1; i <= messages; ++i) {
    std::uint64_t octets = 0;
    if (!c.Command("RETR " + std::to_string(i), &reply) ||
        !c.ReadMultiline(&octets)) {
      ReportError("RETR " + std::to_string(i) + ": " + reply);
      return 1;
    }
    total += octets;
  }
  auto t1 = Clock::now();
  std::string cipher = c.Cipher();
  Quit(c);
  double s = Seconds(t0, t1);
  std::printf("messages=%ld octets=%llu seconds=%.4f mb_per_s=%.1f%s%s\n",
              messages, static_cast<unsigned long long>(total), s,
              static_cast<double>(total) / 1e6 / s,
              cipher.empty() ? "" : " cipher=", cipher.c_str());
  return 0;
}

std::optional<std::vector<User>> ReadUsers(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::vector<User> users;
  User u;
  while (in >> u.name >> u.secret) users.push_back(u);
  if (users.empty()) return std::nullopt;
  return users;
}

// sessions: `count` sessions of connect + login + STAT + QUIT, from
// `concurrency` threads; thread i always uses user i, so that no two
// sessions at once share a mailbox.
int RunSessions(const Options& o, SSL_CTX* ctx) {
  auto users = ReadUsers(o.users_file);
  if (!users || static_cast<int>(users->size()) < o.concurrency) {
    std::fprintf(stderr, "popload: need at least %d users in %s\n",
                 o.concurrency, o.users_file.c_str());
    return 2;
  }
  std::atomic<int> next{0};
  std::atomic<int> failures{0};
  std::vector<std::vector<double>> latencies(o.concurrency);
  auto t0 = Clock::now();
  // No new session starts after --max-seconds; the rate counts those done.
  auto deadline = t0 + std::chrono::seconds(o.max_seconds);
  std::vector<std::thread> threads;
  for (int t = 0; t < o.concurrency; ++t) {
    threads.emplace_back([&, t] {
      const User& u = (*users)[t];
      // A server that refuses every login would otherwise make each
      // thread wait out its failure delays to the last session.
      while (next.fetch_add(1) < o.count && failures.load() < kMaxFailures &&
             Clock::now() < deadline) {
        auto s0 = Clock::now();
        Conn c;
        std::string err, reply;
        if (!c.Connect(o, ctx, &err) || !Login(c, o, u, &err)) {
          ReportError(err);
          ++failures;
          continue;
        }
        if (!c.Command("STAT", &reply)) {
          ReportError("STAT: " + reply);
          ++failures;
          continue;
        }
        if (!Quit(c)) {
          ReportError("QUIT failed");
          ++failures;
          continue;
        }
        latencies[t].push_back(Seconds(s0, Clock::now()));
      }
    });
  }
  for (auto& th : threads) th.join();
  double s = Seconds(t0, Clock::now());
  std::vector<double> all;
  for (auto& v : latencies) all.insert(all.end(), v.begin(), v.end());
  std::sort(all.begin(), all.end());
  auto pct = [&](double p) {
    return all.empty() ? 0.0
                       : all[static_cast<std::size_t>(
                             p * static_cast<double>(all.size() - 1))];
  };
  std::printf(
      "sessions=%zu failures=%d seconds=%.3f rate=%.1f p50_ms=%.1f "
      "p99_ms=%.1f\n",
      all.size(), failures.load(), s, static_cast<double>(all.size()) / s,
      pct(0.5) * 1e3, pct(0.99) * 1e3);
  return failures.load() == 0 ? 0 : 1;
}

// idle: opens `count` sessions (user i for session i), logs each in and
// sends STAT, prints "ready", waits for a line on standard input, then
// QUITs them all.
int RunIdle(const Options& o, SSL_CTX* ctx) {
  auto users = ReadUsers(o.users_file);
  if (!users || static_cast<int>(users->size()) < o.count) {
    std::fprintf(stderr, "popload: need at least %d users in %s\n", o.count,
                 o.users_file.c_str());
    return 2;
  }
  std::vector<std::unique_ptr<Conn>> conns(o.count);
  std::atomic<int> next{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < std::max(1, o.concurrency); ++t) {
    threads.emplace_back([&] {
      for (int i; (i = next.fetch_add(1)) < o.count;) {
        auto c = std::make_unique<Conn>();
        std::string err, reply;
        if (!c->Connect(o, ctx, &err) || !Login(*c, o, (*users)[i], &err) ||
            !c->Command("STAT", &reply)) {
          ReportError(err.empty() ? "STAT: " + reply : err);
          ++failures;
          continue;
        }
        conns[i] = std::move(c);
      }
    });
  }
  for (auto& th : threads) th.join();
  std::printf("ready sessions=%d failures=%d\n", o.count - failures.load(),
              failures.load());
  std::fflush(stdout);
  std::string line;
  std::getline(std::cin, line);
  for (auto& c : conns) {
    if (c) {
      std::string reply;
      c->Command("QUIT", &reply);
    }
  }
  for (auto& c : conns) {
    if (c) c->WaitForClose();
  }
  std::printf("done\n");
  return failures.load() == 0 ? 0 : 1;
}

// The in-process server for selftest: USER, PASS, STAT, RETR, QUIT, each
// response in one write, every message the same prebuilt body.
void ServeSelftest(int listen_fd, SSL_CTX* server_ctx, int messages,
                   const std::string& body) {
  int fd = accept(listen_fd, nullptr, nullptr);
  if (fd < 0) return;
  Conn::SetOptions(fd);
  SSL* ssl = nullptr;
  if (server_ctx != nullptr) {
    ssl = SSL_new(server_ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) != 1) {
      SSL_free(ssl);
      close(fd);
      return;
    }
  }
  Conn c;
  c.Adopt(fd, ssl);
  std::string retr = "+OK message follows\r\n" + body + ".\r\n";
  c.Write("+OK selftest\r\n");
  std::string line;
  while (c.ReadLine(&line)) {
    if (line.starts_with("STAT")) {
      c.Write("+OK " + std::to_string(messages) + " " +
              std::to_string(body.size() * messages) + "\r\n");
    } else if (line.starts_with("RETR")) {
      c.Write(retr);
    } else if (line.starts_with("QUIT")) {
      c.Write("+OK bye\r\n");
      break;
    } else {
      c.Write("+OK\r\n");
    }
  }
}

// selftest: the client's RETR ceiling on this machine, against a server
// that does nothing but write prebuilt responses.
int RunSelftest(Options o, SSL_CTX* ctx) {
  SSL_CTX* server_ctx = nullptr;
  if (o.tls) {
    server_ctx = SSL_CTX_new(TLS_server_method());
    if (SSL_CTX_use_certificate_chain_file(server_ctx, o.cert.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(server_ctx, o.key.c_str(),
                                    SSL_FILETYPE_PEM) != 1) {
      std::fprintf(stderr, "popload: cannot load --cert/--key\n");
      return 2;
    }
  }
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  if (bind(lfd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
      listen(lfd, 1) != 0 ||
      getsockname(lfd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    std::perror("popload: selftest listen");
    return 2;
  }
  // 1 MiB of 76-character lines, as the benchmark mailbox holds.
  std::string body;
  std::string text_line(76, 'x');
  text_line += "\r\n";
  while (body.size() < (1u << 20)) body += text_line;
  std::thread server(ServeSelftest, lfd, server_ctx, o.count, body);
  o.port = ntohs(sa.sin_port);
  o.auth = "pass";
  o.user = "selftest";
  o.secret = "selftest";
  int rc = RunRetr(o, ctx);
  server.join();
  close(lfd);
  if (server_ctx != nullptr) SSL_CTX_free(server_ctx);
  return rc;
}

void Usage() {
  std::fprintf(stderr,
               "usage: popload MODE [options]\n"
               "modes:\n"
               "  open      one session: login, UIDL, QUIT (--user, "
               "--secret)\n"
               "  retr      one session: login, RETR every message, QUIT\n"
               "  sessions  --count N sessions of login + STAT + QUIT from\n"
               "            --concurrency C threads (--users FILE), none\n"
               "            started after --max-seconds S\n"
               "  idle      --count N logged-in sessions held until a line\n"
               "            arrives on standard input (--users FILE)\n"
               "  selftest  RETR --count N 1 MiB messages from an in-process\n"
               "            server: the client's own ceiling\n"
               "options: --host ADDR --port N --tls --auth apop|pass\n"
               "         --user NAME --secret S --users FILE (NAME SECRET "
               "lines)\n"
               "         --count N --concurrency C --cert PEM --key PEM\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    Usage();
    return 2;
  }
  Options o;
  o.mode = argv[1];
  std::map<std::string, std::string*> strings = {
      {"--host", &o.host}, {"--auth", &o.auth},     {"--users", &o.users_file},
      {"--user", &o.user}, {"--secret", &o.secret}, {"--cert", &o.cert},
      {"--key", &o.key}};
  std::map<std::string, int*> ints = {{"--port", &o.port},
                                      {"--count", &o.count},
                                      {"--concurrency", &o.concurrency},
                                      {"--max-seconds", &o.max_seconds}};
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--tls") {
      o.tls = true;
    } else if (strings.contains(a) && i + 1 < argc) {
      *strings[a] = argv[++i];
    } else if (ints.contains(a) && i + 1 < argc) {
      *ints[a] = std::atoi(argv[++i]);
    } else {
      Usage();
      return 2;
    }
  }
  if (o.auth != "apop" && o.auth != "pass") {
    Usage();
    return 2;
  }
  SSL_CTX* ctx = o.tls ? ClientContext() : nullptr;
  int rc;
  if (o.mode == "open") {
    rc = RunOpen(o, ctx);
  } else if (o.mode == "retr") {
    rc = RunRetr(o, ctx);
  } else if (o.mode == "sessions") {
    rc = RunSessions(o, ctx);
  } else if (o.mode == "idle") {
    rc = RunIdle(o, ctx);
  } else if (o.mode == "selftest") {
    rc = RunSelftest(o, ctx);
  } else {
    Usage();
    rc = 2;
  }
  if (ctx != nullptr) SSL_CTX_free(ctx);
  return rc;
}
