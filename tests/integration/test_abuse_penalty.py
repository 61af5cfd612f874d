"""Failed logins cost an address growing delays, then a ban, in every mode."""

import poplib
import socket
import subprocess
import time

import pytest

import harness

BANNED = b"-ERR [SYS/TEMP] too many failed logins from your address, try again later"

# Small values so that the whole story fits in seconds: 100, 200, 400 ms,
# then capped; the 4th failure in a row bans for 3 seconds.
LIMITS = {
    "auth": {
        "fail_delay_ms": 100,
        "max_delay_ms": 400,
        "max_failures": 3,
        "ban_after_failures": 4,
        "ban_window": 60,
        "ban_time": 3,
    },
}


class SourcePOP3(poplib.POP3):
  """poplib from a chosen loopback source address."""

  def __init__(self, port, source="127.0.0.1"):
    self._source = source
    super().__init__("127.0.0.1", port, timeout=10)

  def _create_socket(self, timeout):
    return socket.create_connection((self.host, self.port), timeout,
                                    source_address=(self._source, 0))


def fail_once(p):
  """A wrong password; returns the -ERR line and how long it took."""
  p.user(harness.MAIL_USER)
  start = time.monotonic()
  with pytest.raises(poplib.error_proto) as e:
    p.pass_("wrong-password")
  return e.value.args[0], time.monotonic() - start


def greeting(port, source="127.0.0.1"):
  with socket.create_connection(("127.0.0.1", port), timeout=10,
                                source_address=(source, 0)) as s:
    data = b""
    while not data.endswith(b"\r\n"):
      chunk = s.recv(512)
      if not chunk:
        break
      data += chunk
    return data.rstrip(b"\r\n")


def test_delay_doubles_with_each_failure_of_the_address(start_daemon):
  daemon = start_daemon(LIMITS)
  p = SourcePOP3(daemon.port)
  times = [fail_once(p)[1] for _ in range(2)]
  p.close()
  # A new session from the same address goes on where the last one left.
  p = SourcePOP3(daemon.port)
  err, t3 = fail_once(p)
  p.close()
  assert times[0] >= 0.09 and times[1] >= 0.19 and t3 >= 0.39
  assert times[0] < times[1] < t3 < 2.0
  assert err == b"-ERR [AUTH] authentication failed"


def test_ban_refuses_the_address_at_connect_then_lifts(start_daemon):
  daemon = start_daemon(LIMITS)
  p = SourcePOP3(daemon.port)
  for _ in range(3):
    fail_once(p)
  p.close()
  p = SourcePOP3(daemon.port)
  err, _ = fail_once(p)
  assert err == BANNED
  p.close()

  assert greeting(daemon.port) == BANNED
  ban = daemon.wait_record("ban", client="127.0.0.1")[0]
  assert ban["failures"] == "4" and ban["ban_time"] == "3"
  daemon.wait_record("refused", reason="address-banned", client="127.0.0.1")
  daemon.wait_record("end", reason="address-banned")

  time.sleep(3.2)
  p = SourcePOP3(daemon.port)
  p.user(harness.MAIL_USER)
  assert p.pass_(harness.MAIL_PASSWORD).startswith(b"+OK")
  p.quit()


def test_ban_is_per_address(start_daemon):
  daemon = start_daemon(LIMITS)
  for _ in range(2):
    p = SourcePOP3(daemon.port)
    fail_once(p)
    fail_once(p)
    p.close()
  assert greeting(daemon.port) == BANNED
  p = SourcePOP3(daemon.port, source="127.0.0.2")
  assert p.getwelcome().startswith(b"+OK")
  p.user(harness.MAIL_USER)
  assert p.pass_(harness.MAIL_PASSWORD).startswith(b"+OK")
  p.quit()


def test_a_successful_login_does_not_clear_the_failures(start_daemon):
  # An attacker who owns one account must not reset the count with it.
  daemon = start_daemon(LIMITS)
  p = SourcePOP3(daemon.port)
  for _ in range(3):
    fail_once(p)
  p.close()
  p = SourcePOP3(daemon.port)
  p.user(harness.OTHER_USER)
  assert p.pass_(harness.OTHER_PASSWORD).startswith(b"+OK")
  p.quit()
  p = SourcePOP3(daemon.port)
  err, _ = fail_once(p)
  p.close()
  assert err == BANNED


def test_open_session_is_ended_when_another_starts_a_ban(start_daemon):
  daemon = start_daemon(LIMITS)
  waiting = SourcePOP3(daemon.port)
  for _ in range(2):
    p = SourcePOP3(daemon.port)
    fail_once(p)
    fail_once(p)
    p.close()
  # The right password is not even checked now.
  waiting.user(harness.MAIL_USER)
  with pytest.raises(poplib.error_proto) as e:
    waiting.pass_(harness.MAIL_PASSWORD)
  assert e.value.args[0] == BANNED
  waiting.close()
  rec = daemon.wait_record("auth", result="refused", reason="address banned")
  assert rec[0]["user"] == harness.MAIL_USER


# -- inetd mode: one process per connection, the ban still holds ------------

def inetd_connection(config_path, log):
  """Starts popguard --inetd on one end of a fresh loopback connection."""
  with socket.socket() as listener:
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname(), timeout=10)
    conn, _ = listener.accept()
  proc = subprocess.Popen(
      [str(harness.POPGUARD), "--inetd", "-f", "-c", str(config_path)],
      stdin=conn.fileno(), stdout=conn.fileno(), stderr=log,
      start_new_session=True)
  conn.close()
  return client, proc


class ConnectedPOP3(poplib.POP3):
  def __init__(self, sock):
    self._sock = sock
    super().__init__("127.0.0.1", sock.getpeername()[1], timeout=10)

  def _create_socket(self, timeout):
    self._sock.settimeout(timeout)
    return self._sock


def test_ban_holds_across_inetd_processes(tmp_path, maildir, config,
                                          start_daemon):
  # Started first: its start-up probe comes from 127.0.0.1 too.
  daemon = start_daemon(LIMITS)
  sections = harness.merge({k: dict(v) for k, v in config.items()}, LIMITS)
  cfg = tmp_path / "inetd.toml"
  cfg.write_text(harness.render_config(sections))
  log_path = tmp_path / "inetd.log"
  procs = []
  with open(log_path, "ab") as log:
    for _ in range(2):
      sock, proc = inetd_connection(cfg, log)
      procs.append(proc)
      p = ConnectedPOP3(sock)
      fail_once(p)
      err, _ = fail_once(p)
      p.close()
      assert proc.wait(timeout=15) == 0
    assert err == BANNED

    # A third process, which knows nothing but the file, refuses at once.
    sock, proc = inetd_connection(cfg, log)
    procs.append(proc)
    sock.settimeout(10)
    assert sock.recv(512) == BANNED + b"\r\n"
    assert sock.recv(512) == b""
    sock.close()
    proc.wait(timeout=15)
  for proc in procs:
    harness.check_no_strays(proc.pid)
  text = log_path.read_text()
  assert harness.records(text, "ban")
  assert [r for r in harness.records(text, "refused")
          if r["reason"] == "address-banned"]

  # The standalone daemon reads the same file: the ban holds there too.
  assert greeting(daemon.port) == BANNED
