"""Each confined process is what DESIGN.md says: its walls hold under attack."""

import os
import pathlib
import shutil
import socket
import ssl
import subprocess
import time

import pytest

import harness

HOOKS = harness.BUILD / "monitor" / "popguard-test-hooks"

# What the front attempts (front/test_hooks.cc) and the call its filter
# must stop.  glibc's fork() is clone(); open() is openat().
FORBIDDEN = {
    "execve": "execve",
    "socket": "socket",
    "connect": "connect",
    "ptrace": "ptrace",
    "fork": "clone",
    "read /etc/shadow": "openat",
    "read /etc/pop.auth": "openat",
    "write /tmp/popguard-escape": "openat",
}


WORKER_HOOKS = harness.BUILD / "worker" / "popguard-worker-test-hooks"


@pytest.fixture
def hooks_daemon(start_daemon, monkeypatch, shared_worker):
  for binary in (HOOKS, WORKER_HOOKS):
    if not binary.exists():
      pytest.fail(f"{binary} is missing; build first")
  # The worker runs as the mail user: it needs a copy where that user can
  # execute it, beside the shared ordinary worker.
  worker = shared_worker.parent / WORKER_HOOKS.name
  shutil.copy2(WORKER_HOOKS, worker)
  worker.chmod(0o755)
  monkeypatch.setattr(harness, "POPGUARD", HOOKS)
  return start_daemon({"privsep": {"worker_path": str(worker)}})


def _worker_attempt(daemon, what):
  """The worker's answer to XFORBID, or None if the connection died."""
  client = daemon.login()
  client._putcmd("XFORBID " + what)
  try:
    return client._getline()[0].decode()
  except (EOFError, ConnectionError, harness.poplib.error_proto):
    return None


@pytest.mark.parametrize("what", sorted(FORBIDDEN))
def test_front_killed_by_sigsys_on_forbidden_call(hooks_daemon, what):
  with socket.create_connection(("127.0.0.1", hooks_daemon.port),
                                timeout=10) as s:
    f = s.makefile("rb")
    assert f.readline().startswith(b"+OK")
    s.sendall(b"XFORBID " + what.encode() + b"\r\n")
    # The front dies before it can answer; "-ERR allowed" would mean the
    # call went through.
    assert f.readline() == b""
  hooks_daemon.wait_record("child-killed", process="front", signal="SIGSYS",
                           syscall=FORBIDDEN[what])
  hooks_daemon.wait_record("end", reason="front-killed")


def test_other_clients_are_served_while_a_front_dies(hooks_daemon):
  keep = hooks_daemon.pop3()
  keep.user(harness.MAIL_USER)
  keep.pass_(harness.MAIL_PASSWORD)
  with socket.create_connection(("127.0.0.1", hooks_daemon.port),
                                timeout=10) as s:
    s.makefile("rb").readline()
    s.sendall(b"XFORBID execve\r\n")
    assert s.recv(100) == b""
  assert keep.stat()[0] == len(harness.MESSAGES)
  keep.quit()


def _status(pid):
  fields = {}
  for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
    key, _, value = line.partition(":")
    fields[key] = value.strip()
  return fields


def _session_processes(sid):
  """{pid: status} of the live processes in the daemon's session."""
  found = {}
  for entry in os.listdir("/proc"):
    if not entry.isdigit():
      continue
    try:
      stat = pathlib.Path(f"/proc/{entry}/stat").read_bytes()
      fields = stat[stat.rfind(b")") + 2:].split()
      if int(fields[3]) == sid and fields[0] != b"Z":
        found[int(entry)] = _status(entry)
    except (OSError, IndexError):
      continue
  return found


def _uid(status):
  return int(status["Uid"].split()[0])


def _assert_confined(status, uid):
  real, effective, saved, fs = (int(x) for x in status["Uid"].split())
  assert (real, effective, saved, fs) == (uid, uid, uid, uid)
  assert status["NoNewPrivs"] == "1"
  assert status["Seccomp"] == "2"
  assert int(status["CapEff"], 16) == 0
  assert int(status["CapPrm"], 16) == 0
  assert int(status["CapBnd"], 16) == 0


@pytest.fixture
def tls_files(tmp_path):
  key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
  subprocess.run(
      ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
       "-keyout", str(key), "-out", str(cert), "-days", "2",
       "-subj", "/CN=localhost",
       "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
      check=True, capture_output=True)
  return key, cert


def test_live_processes_run_confined_and_only_monitors_hold_root(
    start_daemon, tls_files):
  key, cert = tls_files
  d = start_daemon({"tls": {"certificate": str(cert),
                            "private_key": str(key)}})
  import pwd
  front_uid = pwd.getpwnam(harness.FRONT_USER).pw_uid
  mail_uid = pwd.getpwnam(harness.MAIL_USER).pw_uid

  # A TLS session keeps its front (the relay) alive beside the worker.
  ctx = ssl.create_default_context(cafile=str(cert))
  client = harness.poplib.POP3("127.0.0.1", d.port, timeout=10)
  d.clients.append(client)
  client.stls(context=ctx)
  client.user(harness.MAIL_USER)
  client.pass_(harness.MAIL_PASSWORD)
  client.stat()

  procs = {}
  deadline = time.monotonic() + 5
  while time.monotonic() < deadline:
    procs = _session_processes(d.pid)
    if {_uid(s) for s in procs.values()} >= {front_uid, mail_uid}:
      break
    time.sleep(0.05)

  fronts = [s for s in procs.values() if _uid(s) == front_uid]
  workers = [s for s in procs.values() if _uid(s) == mail_uid]
  roots = {p: s for p, s in procs.items() if _uid(s) == 0}
  assert len(fronts) == 1 and len(workers) == 1, procs
  _assert_confined(fronts[0], front_uid)
  _assert_confined(workers[0], mail_uid)
  # The worker's groups are the user's own: no group of root's.
  assert "0" not in workers[0]["Groups"].split()

  # Root: the listener, and one monitor per session (its parent is the
  # listener).  Nothing else.
  assert d.pid in roots
  monitors = [p for p, s in roots.items() if p != d.pid]
  assert len(monitors) == 1, roots
  assert int(roots[monitors[0]]["PPid"]) == d.pid
  client.quit()


# The worker runs as the mail user under Landlock and seccomp.  Calls the
# filter forbids kill it; files outside its mailbox are out of reach.
WORKER_KILLED = {
    "execve": "execve",
    "socket": "socket",
    "connect": "connect",
    "ptrace": "ptrace",
    "fork": "clone",
}


@pytest.mark.parametrize("what", sorted(WORKER_KILLED))
def test_worker_killed_by_sigsys_on_forbidden_call(hooks_daemon, what):
  assert _worker_attempt(hooks_daemon, what) is None
  hooks_daemon.wait_record("child-killed", process="worker", signal="SIGSYS",
                           syscall=WORKER_KILLED[what],
                           user=harness.MAIL_USER)
  hooks_daemon.wait_record("end", reason="worker-killed")


def _other_users_message():
  other = harness.home_of(harness.OTHER_USER) / "Maildir"
  harness.fill_maildir(harness.OTHER_USER)
  return next((other / "cur").iterdir())


@pytest.mark.parametrize("what", [
    "read /etc/shadow",
    "read {popauth}",
    "read {popauth_key}",
    "read {other_message}",
    "write /tmp/popguard-worker-escape",
    "write {home}/outside-the-maildir",
])
def test_worker_cannot_reach_files_outside_its_mailbox(hooks_daemon, config,
                                                       what):
  target = what.format(
      popauth=config["auth"]["popauth_file"],
      popauth_key=config["auth"]["popauth_key"],
      other_message=_other_users_message(),
      home=harness.home_of(harness.MAIL_USER))
  answer = _worker_attempt(hooks_daemon, target)
  assert answer == "-ERR EACCES", answer
  path = pathlib.Path(target.split(" ", 1)[1])
  if target.startswith("write"):
    assert not path.exists()


def test_worker_reaches_its_own_mailbox(hooks_daemon):
  maildir = harness.home_of(harness.MAIL_USER) / "Maildir"
  own = next((maildir / "cur").iterdir())
  assert _worker_attempt(hooks_daemon, f"read {own}") == "-ERR allowed"
