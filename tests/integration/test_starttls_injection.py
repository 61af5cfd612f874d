"""STLS against command and response injection.

The variants of "Why TLS is better without STARTTLS" (Poddebniak et al.,
USENIX Security 2021) for POP3.  A man in the middle can append clear-text
bytes behind the client's STLS; a server that keeps them runs them as if
they had come over TLS.  So every test here checks that the first answer
the client reads over TLS answers the first command it sent over TLS,
and that nothing injected reached the monitor (no event=auth record).
"""

import ssl

import pytest

import harness
from rawpop import CAPA_OK, RawClient

QUIT_OK = "+OK popguard signing off"


@pytest.fixture
def client():
  opened = []

  def make(port):
    c = RawClient.connect(port)
    opened.append(c)
    greeting = c.line()
    assert greeting.startswith("+OK"), greeting
    return c

  yield make
  for c in opened:
    c.close()


def no_auth_records(daemon, c):
  return [r for r in daemon.records("auth")
          if r.get("client_port") == str(c.port)] == []


def end_cleanly(c):
  """The first answer over TLS answers QUIT, and nothing follows it."""
  assert c.cmd("QUIT") == QUIT_OK


def test_user_in_the_same_write_as_stls_is_discarded(tls_daemon, client):
  c = client(tls_daemon.port)
  c.write(b"STLS\r\nUSER " + harness.MAIL_USER.encode() + b"\r\n")
  assert c.line().startswith("+OK")
  c.handshake()
  assert c.nothing_pending()
  # Had USER survived, PASS would log in; it answers as if no USER came.
  assert c.cmd(f"PASS {harness.MAIL_PASSWORD}") == "-ERR send USER first"
  end_cleanly(c)
  assert no_auth_records(tls_daemon, c)


def test_capa_in_the_same_write_as_stls_is_not_answered(tls_daemon, client):
  c = client(tls_daemon.port)
  c.write(b"STLS\r\nCAPA\r\n")
  assert c.line().startswith("+OK")
  c.handshake()
  # An injected CAPA would be answered now, unasked.
  assert c.nothing_pending()
  end_cleanly(c)


def test_partial_line_behind_stls_is_not_prefixed(tls_daemon, client):
  c = client(tls_daemon.port)
  # Part of a line: kept, it would turn the first command over TLS into
  # "USER nameCAPA".
  c.write(b"STLS\r\nUSER " + harness.MAIL_USER.encode())
  assert c.line().startswith("+OK")
  c.handshake()
  assert c.nothing_pending()
  caps = c.capa()
  assert "USER" in caps
  assert c.cmd(f"PASS {harness.MAIL_PASSWORD}") == "-ERR send USER first"
  end_cleanly(c)
  assert no_auth_records(tls_daemon, c)


def read_until_closed(sock, timeout=10):
  sock.settimeout(timeout)
  data = b""
  while True:
    try:
      chunk = sock.recv(4096)
    except ConnectionResetError:
      return data
    if not chunk:
      return data
    data += chunk


def test_clear_text_before_the_client_hello_fails_the_handshake(
    tls_daemon, client):
  c = client(tls_daemon.port)
  assert c.cmd("STLS").startswith("+OK")
  # In clear text, where the ClientHello belongs.
  c.write(b"USER " + harness.MAIL_USER.encode() + b"\r\n"
          b"PASS " + harness.MAIL_PASSWORD.encode() + b"\r\n")
  rest = read_until_closed(c.sock)
  # At most a TLS alert record (content type 21); never a POP3 answer.
  assert rest == b"" or rest[0] == 0x15, rest
  assert b"+OK" not in rest and b"-ERR" not in rest
  rec = tls_daemon.wait_record("tls", client_port=c.port)
  assert rec[0]["result"] == "fail" and rec[0].get("error"), rec
  assert no_auth_records(tls_daemon, c)


def test_client_hello_after_clear_text_is_refused(tls_daemon, client):
  c = client(tls_daemon.port)
  assert c.cmd("STLS").startswith("+OK")
  c.write(b"CAPA\r\n")
  with pytest.raises((ssl.SSLError, OSError)):
    c.handshake()
    c.cmd("CAPA")
  tls_daemon.wait_record("tls", client_port=c.port, result="fail")


def test_answers_sent_before_stls_stay_out_of_the_tls_session(
    tls_daemon, client):
  c = client(tls_daemon.port)
  # Pipelined in clear text: each gets its answer in clear text, before
  # the handshake.  An answer the server held back would come out of the
  # TLS session after the handshake, ahead of the answer to CAPA.
  c.write(b"NOOP\r\nCAPA\r\nSTLS\r\n")
  assert c.line() == "-ERR not valid before login"
  assert c.line() == CAPA_OK
  while c.line() != ".":
    pass
  assert c.line().startswith("+OK")
  c.handshake()
  assert c.nothing_pending()
  caps = c.capa()
  assert "STLS" not in caps
  assert c.nothing_pending()
  end_cleanly(c)


def test_stls_after_login_is_refused_by_the_worker(tls_daemon, client):
  c = client(tls_daemon.port)
  assert c.cmd("STLS").startswith("+OK")
  c.handshake()
  assert c.cmd(f"USER {harness.MAIL_USER}").startswith("+OK")
  assert c.cmd(f"PASS {harness.MAIL_PASSWORD}").startswith("+OK")
  assert c.cmd("STLS") == "-ERR STLS is not valid after login"
  # The session goes on, still over TLS.
  assert c.cmd("STAT").startswith("+OK 3 ")
  assert c.cmd("QUIT").startswith("+OK")


def test_stls_after_clear_text_login_is_refused(start_daemon, tls_files,
                                                client):
  cert, key = tls_files
  daemon = start_daemon({
      "auth": {"cleartext": "always"},
      "tls": {"certificate": str(cert), "private_key": str(key)},
  })
  c = client(daemon.port)
  assert c.cmd(f"USER {harness.MAIL_USER}").startswith("+OK")
  assert c.cmd(f"PASS {harness.MAIL_PASSWORD}").startswith("+OK")
  # Upgrading after the password crossed in clear would protect nothing
  # and would give the worker a TLS session to run.
  assert c.cmd("STLS") == "-ERR STLS is not valid after login"
  assert c.cmd("STAT").startswith("+OK 3 ")
  assert c.cmd("QUIT").startswith("+OK")


def test_stls_twice_is_refused_and_the_session_goes_on(tls_daemon, client):
  c = client(tls_daemon.port)
  assert c.cmd("STLS").startswith("+OK")
  c.handshake()
  assert c.cmd("STLS") == "-ERR already using TLS"
  assert c.nothing_pending()
  assert c.cmd(f"USER {harness.MAIL_USER}").startswith("+OK")
  assert c.cmd(f"PASS {harness.MAIL_PASSWORD}").startswith("+OK")
  assert c.cmd("QUIT").startswith("+OK")


def test_stls_on_the_pop3s_port_is_refused(tls_daemon):
  c = RawClient.connect(tls_daemon.tls_port, tls=True)
  try:
    assert c.line().startswith("+OK")
    assert "STLS" not in c.capa()
    assert c.cmd("STLS") == "-ERR already using TLS"
    end_cleanly(c)
  finally:
    c.close()


def test_stls_without_certificate_is_neither_offered_nor_run(start_daemon,
                                                              client):
  daemon = start_daemon({"auth": {"cleartext": "always"}})
  c = client(daemon.port)
  assert "STLS" not in c.capa()
  c.write(b"STLS\r\nCAPA\r\n")
  assert c.line() == "-ERR STLS is not available"
  # Still clear text, and the command behind STLS runs as usual.
  assert c.line() == CAPA_OK
  while c.line() != ".":
    pass
  end_cleanly(c)
  assert daemon.records("tls") == []
