#include "policy/test_hooks.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace popguard::policy {
namespace {

std::string Outcome(long rc) {
  if (rc >= 0) return "allowed";
  const char* name = strerrorname_np(errno);
  return name ? name : "error";
}

}  // namespace

std::string AttemptForbidden(std::string_view what, const std::string& arg) {
  if (what == "execve") {
    char* const argv[] = {const_cast<char*>("/bin/sh"), nullptr};
    return Outcome(execve("/bin/sh", argv, nullptr));
  }
  if (what == "socket") return Outcome(socket(AF_INET, SOCK_STREAM, 0));
  if (what == "connect") {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(25);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return Outcome(connect(3, reinterpret_cast<sockaddr*>(&sin), sizeof sin));
  }
  if (what == "ptrace") return Outcome(ptrace(PTRACE_TRACEME, 0, nullptr, 0));
  if (what == "fork") return Outcome(fork());
  if (what == "read") return Outcome(open(arg.c_str(), O_RDONLY));
  if (what == "write")
    return Outcome(open(arg.c_str(), O_WRONLY | O_CREAT, 0600));
  return "unknown";
}

}  // namespace popguard::policy
