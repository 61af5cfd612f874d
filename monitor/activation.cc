#include "monitor/activation.h"

#include <fcntl.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <charconv>
#include <cstdlib>
#include <optional>
#include <string_view>

#include <fmt/format.h>

namespace popguard::monitor {
namespace {

constexpr int kFirstFd = 3;  // SD_LISTEN_FDS_START
constexpr int kMaxFds = 64;

std::optional<long> Number(const char* text) {
  if (!text) return std::nullopt;
  std::string_view s(text);
  long n = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return n;
}

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  while (true) {
    std::size_t at = s.find(sep);
    out.push_back(s.substr(0, at));
    if (at == std::string_view::npos) return out;
    s.remove_prefix(at + 1);
  }
}

bool IsListeningStream(int fd) {
  struct stat st;
  int type = 0, accepting = 0;
  socklen_t len = sizeof type;
  if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode)) return false;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0) return false;
  len = sizeof accepting;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) < 0)
    return false;
  return type == SOCK_STREAM && accepting == 1;
}

void Forget() {
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
}

}  // namespace

std::expected<std::vector<ActivatedSocket>, std::string> TakeActivatedSockets(
    pid_t self) {
  std::optional<long> pid = Number(std::getenv("LISTEN_PID"));
  std::optional<long> count = Number(std::getenv("LISTEN_FDS"));
  const char* names = std::getenv("LISTEN_FDNAMES");
  // Not for this process (a parent's variables leaked through): ignored,
  // as sd_listen_fds(3) ignores them.
  if (!pid || *pid != self || !count) return {};
  Forget();
  if (*count < 1 || *count > kMaxFds)
    return std::unexpected(fmt::format(
        "socket activation: LISTEN_FDS={} is not 1 to {}", *count, kMaxFds));
  std::vector<std::string_view> name_list =
      names ? Split(names, ':') : std::vector<std::string_view>{};
  std::vector<ActivatedSocket> out;
  for (int i = 0; i < *count; i++) {
    int fd = kFirstFd + i;
    std::string_view name =
        i < static_cast<int>(name_list.size()) ? name_list[i] : "";
    ActivatedSocket s{fd, false, false};
    if (name == "pop3s" || name == "pop3s-proxy") s.implicit_tls = true;
    if (name == "pop3-proxy" || name == "pop3s-proxy") s.proxy = true;
    if (name != "pop3" && !s.implicit_tls && !s.proxy)
      return std::unexpected(fmt::format(
          "socket activation: socket {} is named '{}'; set "
          "FileDescriptorName= to pop3, pop3s, pop3-proxy or pop3s-proxy",
          i + 1, name));
    if (!IsListeningStream(fd))
      return std::unexpected(fmt::format(
          "socket activation: descriptor {} ('{}') is not a listening "
          "stream socket",
          fd, name));
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    out.push_back(s);
  }
  return out;
}

std::string SocketAddress(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  char host[NI_MAXHOST], port[NI_MAXSERV];
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0 ||
      getnameinfo(reinterpret_cast<sockaddr*>(&ss), len, host, sizeof host,
                  port, sizeof port, NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return "?";
  if (ss.ss_family == AF_INET6) return fmt::format("[{}]:{}", host, port);
  return fmt::format("{}:{}", host, port);
}

}  // namespace popguard::monitor
