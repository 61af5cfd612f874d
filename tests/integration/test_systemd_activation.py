"""Socket activation: the listener serves the sockets systemd hands over.

The test stands in for systemd's socket unit: it binds the sockets itself
and starts popguard with them on descriptors 3, 4, ... and LISTEN_PID,
LISTEN_FDS and LISTEN_FDNAMES set, as systemd does (sd_listen_fds(3)).
"""

import poplib
import signal
import socket
import subprocess

import pytest

import harness
from rawpop import unverified_tls_context


def listening(port=0):
  s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
  s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
  s.bind(("127.0.0.1", port))
  s.listen(16)
  return s


@pytest.fixture
def sockets():
  made = []

  def make(*names):
    pairs = [(listening(), name) for name in names]
    made.extend(s for s, _ in pairs)
    return pairs

  yield make
  for s in made:
    s.close()


def port_is_closed(port):
  try:
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
    return False
  except ConnectionRefusedError:
    return True


def unit_name(unit):
  """The FileDescriptorName= of a socket unit popguard ships."""
  path = harness.SOURCE / "packaging" / "systemd" / unit
  names = [line.split("=", 1)[1].strip()
           for line in path.read_text().splitlines()
           if line.startswith("FileDescriptorName=")]
  assert len(names) == 1, names
  return names[0]


def test_handed_over_sockets_serve_pop3_and_pop3s(start_daemon, sockets,
                                                  tls_files):
  # Named as the shipped units name them.
  cert, key = tls_files
  plain, tls = sockets(unit_name("popguard.socket"),
                       unit_name("popguard-pop3s.socket"))
  configured = harness.free_port()
  daemon = start_daemon(
      {"server": {"listen": [f"127.0.0.1:{configured}"]},
       "tls": {"certificate": str(cert), "private_key": str(key)}},
      activated=[plain, tls])

  p = daemon.login()
  assert p.stat()[0] == 3
  p.quit()
  q = poplib.POP3_SSL("127.0.0.1", tls[0].getsockname()[1],
                      context=unverified_tls_context(), timeout=10)
  q.user(harness.MAIL_USER)
  q.pass_(harness.MAIL_PASSWORD)
  assert q.stat()[0] == 3
  q.quit()

  # The configured address is not bound: systemd owns the sockets.
  assert port_is_closed(configured)
  start = daemon.records("start")[0]
  assert start["listen"] == f"127.0.0.1:{plain[0].getsockname()[1]}"
  assert start["listen_tls"] == f"127.0.0.1:{tls[0].getsockname()[1]}"
  daemon.wait_record("tls", result="ok")
  daemon.wait_record("connect", implicit_tls="yes",
                     server_port=tls[0].getsockname()[1])


def test_a_reload_keeps_the_handed_over_sockets(start_daemon, sockets):
  (plain,) = sockets("pop3")
  daemon = start_daemon({}, activated=[plain])
  daemon.signal(signal.SIGHUP)
  daemon.wait_record("reload")
  p = daemon.login()
  assert p.stat()[0] == 3
  p.quit()


def run_once(config_path, pairs, log_path, pid_offset=0):
  """popguard -f with the sockets handed over, for a start the daemon
  fixture cannot make; its output goes to log_path."""
  with open(log_path, "wb") as log:
    return subprocess.Popen(
        [str(harness.POPGUARD), "-f", "-c", str(config_path)],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        preexec_fn=harness.socket_handover(pairs, pid_offset),
        close_fds=False, start_new_session=True)


def test_a_socket_without_a_known_name_stops_the_start(tmp_path, config,
                                                       sockets):
  (unnamed,) = sockets("popguard.socket")  # systemd's default name
  path = tmp_path / "popguard.toml"
  path.write_text(harness.render_config(config))
  proc = run_once(path, [unnamed], tmp_path / "log")
  assert proc.wait(timeout=30) == 1
  assert ("socket activation: socket 1 is named 'popguard.socket'; set "
          "FileDescriptorName= to pop3, pop3s, pop3-proxy or pop3s-proxy"
          in (tmp_path / "log").read_text())


def test_variables_meant_for_another_process_are_ignored(config, sockets,
                                                         tmp_path):
  # LISTEN_PID names someone else: the configured address is bound.
  (plain,) = sockets("pop3")
  path = tmp_path / "popguard.toml"
  path.write_text(harness.render_config(config))
  proc = run_once(path, [plain], tmp_path / "log", pid_offset=1)
  try:
    port = int(config["server"]["listen"][0].rsplit(":", 1)[1])
    harness.wait_for_port(port, proc, tmp_path / "log")
  finally:
    proc.terminate()
    proc.wait(timeout=30)
  harness.check_no_strays(proc.pid)
