"""inetd mode: one connection on stdin/stdout, as xinetd starts it."""

import poplib
import socket
import ssl
import subprocess

import pytest

import harness


class ConnectedPOP3(poplib.POP3):
  """poplib over a socket that is already connected."""

  def __init__(self, sock):
    self._sock = sock
    super().__init__("127.0.0.1", sock.getpeername()[1], timeout=10)

  def _create_socket(self, timeout):
    self._sock.settimeout(timeout)
    return self._sock


@pytest.fixture
def inetd(tmp_path, maildir, config):
  """Starts popguard --inetd for one connection; yields (client, proc)."""
  started = []

  def connect(overrides=None, args=(), wrap=None):
    sections = harness.merge({k: dict(v) for k, v in config.items()},
                             overrides)
    cfg = tmp_path / f"inetd{len(started)}.toml"
    cfg.write_text(harness.render_config(sections))
    log_path = tmp_path / f"inetd{len(started)}.log"
    with socket.socket() as listener:
      listener.bind(("127.0.0.1", 0))
      listener.listen(1)
      client = socket.create_connection(listener.getsockname(), timeout=10)
      conn, _ = listener.accept()
    with open(log_path, "wb") as log:
      proc = subprocess.Popen(
          [str(harness.POPGUARD), "--inetd", "-f", "-c", str(cfg), *args],
          stdin=conn.fileno(), stdout=conn.fileno(), stderr=log,
          start_new_session=True)
    conn.close()  # the daemon holds the only server-side descriptor now
    started.append((proc, log_path))
    if wrap:
      client = wrap(client)
    return ConnectedPOP3(client), proc, log_path

  yield connect
  for proc, log_path in started:
    try:
      proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait(timeout=5)
      raise AssertionError("inetd popguard did not exit:\n"
                           + log_path.read_text(errors="replace"))
    harness.check_no_strays(proc.pid,
                            lambda: log_path.read_text(errors="replace"))


def test_full_session_over_stdin(inetd, maildir):
  p, proc, log_path = inetd()
  assert p.getwelcome().startswith(b"+OK")
  assert "USER" in p.capa()
  p.user(harness.MAIL_USER)
  p.pass_(harness.MAIL_PASSWORD)
  assert p.stat()[0] == 3
  _, lines, _ = p.retr(3)
  assert b"\r\n".join(lines) + b"\r\n" == harness.wire(harness.MESSAGES[2][2])
  assert len(p.uidl()[1]) == 3
  p.dele(1)
  assert p.quit().startswith(b"+OK")
  assert proc.wait(timeout=15) == 0
  assert len(harness.maildir_files(maildir)) == 2
  text = log_path.read_text()
  end = harness.records(text, "end")
  assert end and end[0]["reason"] == "quit" and end[0]["deleted"] == "1"
  connect = harness.records(text, "connect")
  assert connect and connect[0]["client"] == "127.0.0.1"
  assert harness.MAIL_PASSWORD not in text


def test_apop_over_stdin(inetd):
  p, proc, _ = inetd()
  assert p.apop(harness.MAIL_USER, harness.APOP_SECRET).startswith(b"+OK")
  p.quit()
  assert proc.wait(timeout=15) == 0


def test_failed_login_then_disconnect_exits(inetd, maildir):
  p, proc, log_path = inetd()
  p.user(harness.MAIL_USER)
  with pytest.raises(poplib.error_proto):
    p.pass_("wrong-password")
  p.close()
  proc.wait(timeout=15)
  assert harness.records(log_path.read_text(), "auth")[0]["result"] == "fail"
  assert len(harness.maildir_files(maildir)) == 3


def test_default_policy_refuses_clear_text_over_stdin(inetd):
  p, proc, _ = inetd({"auth": {"cleartext": None}})
  assert "USER" not in p.capa()
  with pytest.raises(poplib.error_proto) as e:
    p.user(harness.MAIL_USER)
    p.pass_(harness.MAIL_PASSWORD)
  assert e.value.args[0].startswith(b"-ERR [AUTH]")
  p.close()
  proc.wait(timeout=15)


def test_failures_count_across_inetd_processes(inetd):
  """xinetd starts a process per connection; a ban still holds."""
  overrides = {"auth": {"ban_after_failures": 2, "ban_window": 60,
                        "ban_time": 60}}
  for _ in range(2):
    p, proc, _ = inetd(overrides)
    p.user(harness.MAIL_USER)
    with pytest.raises(poplib.error_proto):
      p.pass_("wrong-password")
    p.close()
    proc.wait(timeout=15)
  with pytest.raises(poplib.error_proto) as e:
    inetd(overrides)
  assert e.value.args[0].startswith(b"-ERR [SYS/TEMP]")


def test_implicit_tls_over_stdin(inetd, tls_files):
  """--inetd --tls: what xinetd's pop3s service would run."""
  cert, key = tls_files
  ctx = ssl.create_default_context()
  ctx.check_hostname = False
  ctx.verify_mode = ssl.CERT_NONE  # self-signed test certificate
  p, proc, log_path = inetd(
      {"auth": {"cleartext": None},
       "tls": {"certificate": str(cert), "private_key": str(key)}},
      args=["--tls"], wrap=ctx.wrap_socket)
  p.user(harness.MAIL_USER)
  assert p.pass_(harness.MAIL_PASSWORD).startswith(b"+OK")
  assert p.stat()[0] == 3
  p.quit()
  assert proc.wait(timeout=15) == 0
  login = harness.records(log_path.read_text(), "login")
  assert login and login[0]["tls"] == "yes"
