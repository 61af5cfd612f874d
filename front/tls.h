// TLS for the front (RFC 8314 implicit TLS, RFC 2595 STLS), with OpenSSL.
//
// The listener builds the server context once (and again on SIGHUP): the
// private key is read there, as root, before any front exists.  A front
// inherits the context through fork and never opens a file.  Only the
// front links libssl; the worker, a fresh exec, never holds the key.
#pragma once

#include <openssl/ssl.h>

#include <chrono>
#include <expected>
#include <memory>
#include <string>
#include <string_view>

namespace popguard::front {

struct TlsSettings {
  std::string certificate;  // PEM chain, leaf first
  std::string private_key;  // PEM
  std::string min_protocol = "TLSv1.2";
  std::string ciphers;       // TLS 1.2 and below; empty: OpenSSL's default
  std::string ciphersuites;  // TLS 1.3; empty: OpenSSL's default
};

struct SslCtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
using SslCtxPtr = std::shared_ptr<SSL_CTX>;

// Loads the chain and key, checks that they match, applies the protocol
// floor and cipher lists.  The error names the file and OpenSSL's reason.
std::expected<SslCtxPtr, std::string> MakeServerContext(
    const TlsSettings& settings);

// A client connection, plain until StartTls succeeds.  The descriptor is
// left blocking: the front serves one client, and every wait it does is
// bounded by a poll with the session's deadline (or, during the relay, by
// the client and the worker themselves).
class ClientStream {
 public:
  using Clock = std::chrono::steady_clock;

  explicit ClientStream(int fd) : fd_(fd) {}
  ~ClientStream();
  ClientStream(const ClientStream&) = delete;
  ClientStream& operator=(const ClientStream&) = delete;

  // Runs the server side of the handshake.  On failure, *error says why.
  bool StartTls(SSL_CTX* ctx, Clock::time_point deadline, std::string* error);

  bool tls() const { return ssl_ != nullptr; }
  std::string Protocol() const;
  std::string Cipher() const;

  // Waits until the deadline for bytes.  Returns the count read, 0 at the
  // end of the stream or on an error, -1 when the deadline passed.
  long Read(char* buf, std::size_t n, Clock::time_point deadline);

  bool WriteAll(std::string_view data);

  // Closes the TLS layer politely (close_notify), if there is one.
  void Shutdown();

  // Copies bytes both ways between the client and `peer` (a stream socket
  // to the worker) until either side closes.
  void Relay(int peer);

  int fd() const { return fd_; }

 private:
  bool WaitReadable(Clock::time_point deadline);

  int fd_;
  SSL* ssl_ = nullptr;
};

}  // namespace popguard::front
