"""Sessions per client address are capped, in a burst and across processes."""

import os
import signal
import socket
import subprocess
import time

import harness

TOO_MANY = b"-ERR [SYS/TEMP] too many sessions from your address"
LIMIT = 3
BURST = 50


def open_and_greet(port, count, source="127.0.0.1"):
  """Opens `count` connections at once; returns (socket, first line)."""
  socks = []
  for _ in range(count):
    s = socket.create_connection(("127.0.0.1", port), timeout=15,
                                 source_address=(source, 0))
    socks.append(s)
  out = []
  for s in socks:
    line = b""
    while not line.endswith(b"\r\n"):
      chunk = s.recv(512)
      if not chunk:
        break
      line += chunk
    out.append((s, line.rstrip(b"\r\n")))
  return out


def close_all(pairs):
  for s, _ in pairs:
    s.close()


def monitor_pids(listener_pid):
  """The listener's children: one monitor per connection."""
  with open(f"/proc/{listener_pid}/task/{listener_pid}/children") as f:
    return [int(p) for p in f.read().split()]


def no_sessions_left(daemon, timeout=10):
  """Waits until the listener has no monitor: the connection the harness
  made to see the port open holds a place until its monitor is gone."""
  deadline = time.monotonic() + timeout
  while monitor_pids(daemon.pid) and time.monotonic() < deadline:
    time.sleep(0.05)
  assert monitor_pids(daemon.pid) == []


def greet_when_free(port, timeout):
  """One connection, retried until it is greeted +OK or time runs out."""
  deadline = time.monotonic() + timeout
  while True:
    got = open_and_greet(port, 1)
    if got[0][1].startswith(b"+OK") or time.monotonic() > deadline:
      return got
    close_all(got)
    time.sleep(0.1)


def test_burst_from_one_address_gets_only_its_share(start_daemon):
  daemon = start_daemon({
      "server": {"max_sessions": 100, "max_sessions_per_address": LIMIT},
  })
  no_sessions_left(daemon)
  got = open_and_greet(daemon.port, BURST)
  served = [s for s, line in got if line.startswith(b"+OK")]
  refused = [line for _, line in got if not line.startswith(b"+OK")]
  assert len(served) == LIMIT
  assert refused == [TOO_MANY] * (BURST - LIMIT)
  recs = daemon.wait_record("refused", count=BURST - LIMIT,
                            reason="sessions-per-address")
  assert recs[0]["client"] == "127.0.0.1"

  # Another address is not held back by this one's sessions.
  other = open_and_greet(daemon.port, 1, source="127.0.0.2")
  assert other[0][1].startswith(b"+OK")
  close_all(other)

  # Ending a session frees its place.
  close_all(got)
  again = greet_when_free(daemon.port, 10)
  assert again[0][1].startswith(b"+OK")
  close_all(again)


def test_place_of_a_killed_monitor_is_freed(start_daemon):
  daemon = start_daemon({"server": {"max_sessions_per_address": 1}})
  no_sessions_left(daemon)
  held = open_and_greet(daemon.port, 1)
  assert held[0][1].startswith(b"+OK")
  assert open_and_greet(daemon.port, 1)[0][1] == TOO_MANY
  # SIGKILL leaves no chance to say goodbye: the slot's owner is dead.
  # The refused connection's monitor may be ending as the list is read.
  for pid in monitor_pids(daemon.pid):
    try:
      os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
      pass
  close_all(held)
  again = greet_when_free(daemon.port, 30)
  assert again[0][1].startswith(b"+OK")
  close_all(again)


def test_limit_holds_across_inetd_processes(tmp_path, maildir, config):
  sections = harness.merge({k: dict(v) for k, v in config.items()},
                           {"server": {"max_sessions_per_address": 2}})
  cfg = tmp_path / "inetd.toml"
  cfg.write_text(harness.render_config(sections))
  procs, clients = [], []
  with open(tmp_path / "inetd.log", "ab") as log:
    for _ in range(3):
      with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = socket.create_connection(listener.getsockname(), timeout=10)
        conn, _ = listener.accept()
      procs.append(subprocess.Popen(
          [str(harness.POPGUARD), "--inetd", "-f", "-c", str(cfg)],
          stdin=conn.fileno(), stdout=conn.fileno(), stderr=log,
          start_new_session=True))
      conn.close()
      clients.append(client)
      # One at a time, so that which one is refused is known.
      assert client.recv(512).startswith(
          b"+OK" if len(clients) <= 2 else TOO_MANY)
  for c in clients:
    c.close()
  for p in procs:
    p.wait(timeout=15)
    harness.check_no_strays(p.pid)
