"""A POP3 client that reads lines itself.

poplib buffers what the server sends; the STARTTLS and policy tests need
to see every byte, and to know that nothing sat unread in a buffer when
the TLS handshake started.
"""

import socket
import ssl

CAPA_OK = "+OK capability list follows"


def unverified_tls_context():
  """The tests' certificates are self-signed: what is under test is the
  server's state machine and policy, not the PKI."""
  ctx = ssl.create_default_context()
  ctx.check_hostname = False
  ctx.verify_mode = ssl.CERT_NONE
  return ctx


class RawClient:

  def __init__(self, sock):
    self.sock = sock
    self.buf = b""
    self.port = sock.getsockname()[1]

  @classmethod
  def connect(cls, port, tls=False):
    """A client on 127.0.0.1:port, with implicit TLS if `tls`."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if tls:
      sock = unverified_tls_context().wrap_socket(sock)
    return cls(sock)

  def line(self):
    while b"\r\n" not in self.buf:
      chunk = self.sock.recv(4096)
      if not chunk:
        raise EOFError(f"connection closed; pending {self.buf!r}")
      self.buf += chunk
    line, _, self.buf = self.buf.partition(b"\r\n")
    return line.decode()

  def write(self, data):
    self.sock.sendall(data)

  def cmd(self, text):
    self.write(text.encode() + b"\r\n")
    return self.line()

  def capa(self):
    """CAPA's answer as {name: [arguments]}."""
    first = self.cmd("CAPA")
    assert first == CAPA_OK, first
    caps = {}
    while (line := self.line()) != ".":
      name, *args = line.split()
      caps[name] = args
    return caps

  def nothing_pending(self, wait=0.3):
    """True if the server sent nothing the client has not asked for.

    Over TLS the socket may be readable with no data for the client (a
    TLS 1.3 session ticket), so this reads rather than polls.
    """
    if self.buf:
      return False
    self.sock.settimeout(wait)
    try:
      chunk = self.sock.recv(4096)
    except (TimeoutError, socket.timeout, ssl.SSLWantReadError):
      return True
    finally:
      self.sock.settimeout(10)
    self.buf += chunk
    return False

  def handshake(self):
    """Starts TLS; the server's +OK to STLS must have been read."""
    assert self.buf == b"", self.buf
    self.sock = unverified_tls_context().wrap_socket(self.sock)

  def stls(self):
    answer = self.cmd("STLS")
    assert answer.startswith("+OK"), answer
    self.handshake()

  def close(self):
    self.sock.close()
