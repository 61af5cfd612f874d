#include "front/tls.h"

#include <openssl/err.h>
#include <poll.h>
#include <unistd.h>

#include <fmt/format.h>
#include <cerrno>

namespace popguard::front {
namespace {

std::string OpenSslError() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

std::expected<int, std::string> ProtocolVersion(std::string_view name) {
  if (name == "TLSv1.2") return TLS1_2_VERSION;
  if (name == "TLSv1.3") return TLS1_3_VERSION;
  return std::unexpected(
      fmt::format("unknown minimum protocol '{}' (TLSv1.2 or TLSv1.3)", name));
}

int Milliseconds(ClientStream::Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - ClientStream::Clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

}  // namespace

std::expected<SslCtxPtr, std::string> MakeServerContext(const TlsSettings& s) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()), SslCtxFree());
  if (!ctx) return std::unexpected("SSL_CTX_new: " + OpenSslError());
  auto floor = ProtocolVersion(s.min_protocol);
  if (!floor) return std::unexpected(floor.error());
  SSL_CTX_set_min_proto_version(ctx.get(), *floor);

  // Renegotiation is a client's way to make us work; POP3 has no use for
  // it.  Compression invites CRIME-style attacks.  Session tickets would
  // need a key shared across processes that we would have to rotate; a
  // POP3 client rarely resumes, so a full handshake it is.
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION |
                                     SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET |
                                     SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  // TLS 1.3 sends stateful tickets even with SSL_OP_NO_TICKET; with no
  // cache they could never be used.
  SSL_CTX_set_num_tickets(ctx.get(), 0);
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_AUTO_RETRY);

  if (!s.ciphers.empty() &&
      SSL_CTX_set_cipher_list(ctx.get(), s.ciphers.c_str()) != 1)
    return std::unexpected("tls.ciphers: " + OpenSslError());
  if (!s.ciphersuites.empty() &&
      SSL_CTX_set_ciphersuites(ctx.get(), s.ciphersuites.c_str()) != 1)
    return std::unexpected("tls.ciphersuites: " + OpenSslError());
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), s.certificate.c_str()) != 1)
    return std::unexpected(
        fmt::format("{}: {}", s.certificate, OpenSslError()));
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), s.private_key.c_str(),
                                  SSL_FILETYPE_PEM) != 1)
    return std::unexpected(
        fmt::format("{}: {}", s.private_key, OpenSslError()));
  if (SSL_CTX_check_private_key(ctx.get()) != 1)
    return std::unexpected(
        fmt::format("{} does not match {}", s.private_key, s.certificate));
  return ctx;
}

ClientStream::~ClientStream() {
  if (ssl_) SSL_free(ssl_);
}

bool ClientStream::WaitReadable(Clock::time_point deadline) {
  for (;;) {
    pollfd pfd{fd_, POLLIN, 0};
    int r = poll(&pfd, 1, Milliseconds(deadline));
    if (r < 0 && errno == EINTR) continue;
    return r > 0;
  }
}

bool ClientStream::StartTls(SSL_CTX* ctx, Clock::time_point deadline,
                            std::string* error) {
  ssl_ = SSL_new(ctx);
  if (!ssl_ || SSL_set_fd(ssl_, fd_) != 1) {
    *error = OpenSslError();
    return false;
  }
  // The handshake is bounded by the login deadline: wait for the client's
  // first flight with a poll, and the monitor kills a front that overstays.
  if (!WaitReadable(deadline)) {
    *error = "no handshake within the time allowed";
    return false;
  }
  if (SSL_accept(ssl_) != 1) {
    *error = OpenSslError();
    return false;
  }
  return true;
}

std::string ClientStream::Protocol() const {
  return ssl_ ? SSL_get_version(ssl_) : "";
}

std::string ClientStream::Cipher() const {
  return ssl_ ? SSL_get_cipher_name(ssl_) : "";
}

long ClientStream::Read(char* buf, std::size_t n, Clock::time_point deadline) {
  if (!(ssl_ && SSL_pending(ssl_) > 0) && !WaitReadable(deadline))
    return Clock::now() >= deadline ? -1 : 0;
  if (ssl_) {
    int r = SSL_read(ssl_, buf, static_cast<int>(n));
    return r > 0 ? r : 0;
  }
  ssize_t r;
  do {
    r = read(fd_, buf, n);
  } while (r < 0 && errno == EINTR);
  return r > 0 ? r : 0;
}

bool ClientStream::WriteAll(std::string_view data) {
  while (!data.empty()) {
    long n;
    if (ssl_) {
      n = SSL_write(ssl_, data.data(), static_cast<int>(data.size()));
    } else {
      n = write(fd_, data.data(), data.size());
      if (n < 0 && errno == EINTR) continue;
    }
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

void ClientStream::Shutdown() {
  if (ssl_) SSL_shutdown(ssl_);
}

void ClientStream::Relay(int peer) {
  // One TLS record holds 16 KiB; reading the worker in larger pieces lets
  // SSL_write fill whole records.
  static char buf[64 * 1024];
  for (;;) {
    pollfd fds[2] = {{fd_, POLLIN, 0}, {peer, POLLIN, 0}};
    bool pending = ssl_ && SSL_pending(ssl_) > 0;
    int r = pending ? 1 : poll(fds, 2, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return;
    if (pending || (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
      long n =
          ssl_ ? SSL_read(ssl_, buf, sizeof buf) : read(fd_, buf, sizeof buf);
      if (n <= 0) return;
      for (long off = 0; off < n;) {
        ssize_t w = write(peer, buf + off, static_cast<std::size_t>(n - off));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        off += w;
      }
      continue;
    }
    if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = read(peer, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || !WriteAll({buf, static_cast<std::size_t>(n)})) return;
    }
  }
}

}  // namespace popguard::front
