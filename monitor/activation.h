// Listening sockets handed over by systemd (socket activation).
//
// The protocol is sd_listen_fds(3)'s: descriptors 3, 4, ... are the
// sockets, LISTEN_FDS says how many, LISTEN_PID names the process they are
// for, LISTEN_FDNAMES gives each its FileDescriptorName=.  It is read here
// without libsystemd: three environment variables do not justify linking
// the six libraries libsystemd brings into every monitor process.
//
// The name says what a socket is for:
//   pop3         plain POP3 (STLS offered when a certificate is set)
//   pop3s        POP3 over implicit TLS
//   pop3-proxy   plain, behind a balancer sending the PROXY header
//   pop3s-proxy  implicit TLS behind such a balancer
// A socket without one of these names is an error, not a guess: a POP3S
// socket taken for a plain one would read a TLS handshake as commands.
#pragma once

#include <sys/types.h>

#include <expected>
#include <string>
#include <vector>

namespace popguard::monitor {

struct ActivatedSocket {
  int fd;
  bool implicit_tls;
  bool proxy;
};

// Takes the sockets systemd passed to process `self` (getpid()), marks
// them close-on-exec and removes the variables from the environment.  An
// empty list when the process was not socket-activated; an error naming
// the problem when the variables are there but wrong.
std::expected<std::vector<ActivatedSocket>, std::string> TakeActivatedSockets(
    pid_t self);

// "192.0.2.1:110" or "[2001:db8::1]:110": where a listening socket is
// bound, for the log.
std::string SocketAddress(int fd);

}  // namespace popguard::monitor
