"""Shared pieces of the integration tests: accounts, mailboxes, the daemon.

Everything here runs as root against the real binaries of a build
directory, real PAM (pam_unix through /etc/pam.d/popguard) and real
Maildirs, and talks only to 127.0.0.1.
"""

import fcntl
import os
import pathlib
import poplib
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

SOURCE = pathlib.Path(
    os.environ.get("POPGUARD_SOURCE",
                   pathlib.Path(__file__).resolve().parents[2]))
BUILD = pathlib.Path(os.environ.get("POPGUARD_BUILD", SOURCE / "build"))
POPGUARD = BUILD / "monitor" / "popguard"
POPAUTH = BUILD / "monitor" / "popauth"
WORKER = BUILD / "worker" / "popguard-worker"
PAM_FILE = SOURCE / "packaging" / "pam.d" / "popguard"

# The accounts the tests log in as, named after this test run so that two
# runs on one machine never share a mailbox or remove each other's users.
# Passwords are distinctive so that a search of the logs for them cannot
# match anything else.
RUN_TAG = str(os.getpid())
ACCOUNT_COMMENT = "popguard integration test"
MAIL_USER = f"pgt{RUN_TAG}"
MAIL_PASSWORD = "Pg7-pass-Wq2xZ"
OTHER_USER = f"pgo{RUN_TAG}"
OTHER_PASSWORD = "Pg7-other-Jk4vB"
SYSTEM_USER = f"pgs{RUN_TAG}"  # a system account: uid below min_uid
SYSTEM_PASSWORD = "Pg7-sys-Rt9mN"
APOP_SECRET = "Pg7-apop-Hc5yL"
FRONT_USER = "popguard"

HOSTNAME = "pgtest.example"
FAIL_DELAY_MS = 200
EMPTY_DIR = "/var/lib/popguard/empty"

# Three messages, stored with LF line ends as an MDA writes them.  The
# second holds lines that need dot-stuffing; the third spans many TCP
# segments.  Names sort in delivery order and mtimes follow them, so that
# any sensible numbering (by name, by time, cur/ before new/) agrees.
_BIG_BODY = b"".join(b"line %05d of a long message, padded to width\n" % i
                     for i in range(800))
MESSAGES = [
    ("cur", "1700000001.M1P101.pgtest.example:2,S",
     b"From: Alice <alice@example.org>\n"
     b"To: pgtest@example.org\n"
     b"Subject: first message\n"
     b"Message-ID: <first@example.org>\n"
     b"\n"
     b"Hello.\n"
     b"This is the first message.\n"),
    ("cur", "1700000002.M2P102.pgtest.example:2,",
     b"From: Bob <bob@example.org>\n"
     b"To: pgtest@example.org\n"
     b"Subject: dots\n"
     b"Message-ID: <dots@example.org>\n"
     b"\n"
     b".a line that starts with a dot\n"
     b".\n"
     b"..two dots\n"
     b"last line\n"),
    ("new", "1700000003.M3P103.pgtest.example",
     b"From: Carol <carol@example.org>\n"
     b"To: pgtest@example.org\n"
     b"Subject: long message\n"
     b"Message-ID: <long@example.org>\n"
     b"\n" + _BIG_BODY),
]


def wire(message):
  """The message as RETR sends it after unstuffing: CRLF line ends."""
  return message.replace(b"\n", b"\r\n")


def message_bodies():
  return [m for _, _, m in MESSAGES]


def run(*argv, check=True, **kw):
  return subprocess.run([str(a) for a in argv], check=check,
                        capture_output=True, text=True, **kw)


# -- accounts ---------------------------------------------------------------

def user_exists(name):
  try:
    pwd.getpwnam(name)
    return True
  except KeyError:
    return False


def remove_stale_accounts():
  """Removes test accounts left by runs that were killed.

  Only accounts that carry ACCOUNT_COMMENT and whose run (the pid in the
  name) is gone are touched.
  """
  for pw in pwd.getpwall():
    m = re.fullmatch(r"pg[tos](\d+)", pw.pw_name)
    if not m or pw.pw_gecos != ACCOUNT_COMMENT:
      continue
    if os.path.exists(f"/proc/{m.group(1)}"):
      continue
    run("userdel", "--remove", pw.pw_name, check=False)


def ensure_user(name, password, system=False):
  """Creates `name` if missing and sets its password.  True if created."""
  created = False
  if not user_exists(name):
    argv = ["useradd", "--shell", "/usr/sbin/nologin", "--create-home",
            "--comment", ACCOUNT_COMMENT]
    if system:
      argv.append("--system")
    run(*argv, name)
    created = True
  run("chpasswd", input=f"{name}:{password}\n")
  return created


def ensure_front_user():
  if not user_exists(FRONT_USER):
    run("useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
        "--shell", "/usr/sbin/nologin", FRONT_USER)


def ensure_pam_file():
  target = pathlib.Path("/etc/pam.d/popguard")
  if not target.exists():
    shutil.copyfile(PAM_FILE, target)
    target.chmod(0o644)


def home_of(user):
  return pathlib.Path(pwd.getpwnam(user).pw_dir)


def fill_maildir(user, messages=MESSAGES):
  """Replaces the user's ~/Maildir with `messages`, owned by the user."""
  pw = pwd.getpwnam(user)
  maildir = pathlib.Path(pw.pw_dir) / "Maildir"
  if maildir.exists():
    shutil.rmtree(maildir)
  for sub in ("", "cur", "new", "tmp"):
    d = maildir / sub
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chown(d, pw.pw_uid, pw.pw_gid)
  stamp = 1700000001
  for sub, name, body in messages:
    path = maildir / sub / name
    path.write_bytes(body)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    path.chmod(0o600)
    os.utime(path, (stamp, stamp))
    stamp += 60
  return maildir


def mbox_text(bodies):
  """An mbox holding `bodies`, dated in 2023, a blank line after each."""
  out = b""
  for i, body in enumerate(bodies):
    out += b"From sender@example.org Tue Nov 14 22:13:2%d 2023\n" % i
    out += body + b"\n"
  return out


def maildir_files(maildir):
  """Message file contents still in the Maildir, in name order."""
  paths = sorted(p for sub in ("cur", "new")
                 for p in (maildir / sub).iterdir())
  return [p.read_bytes() for p in paths]


def run_fetchmail(port, workdir, keep=False, rc_ssl='  sslproto ""\n',
                  args=()):
  """Runs fetchmail once against 127.0.0.1:port as MAIL_USER and returns
  what it delivered, each message as it landed in its own file.

  rc_ssl is the TLS part of the poll entry; the default turns TLS off
  (fetchmail 6.4 insists on it otherwise).  args go on the command line.
  """
  out = workdir / "out"
  out.mkdir(exist_ok=True)
  rc = workdir / "fetchmailrc"
  rc.write_text(
      "set no bouncemail\n"
      "set invisible\n"
      f"poll 127.0.0.1 service {port} protocol POP3\n"
      "  auth password timeout 30\n"
      f'  user "{MAIL_USER}" there'
      f' with password "{MAIL_PASSWORD}" is "root" here\n'
      + rc_ssl +
      "  fetchall\n"
      f"  {'keep' if keep else 'no keep'}\n"
      # The shell's pid names each delivery: one file per message.
      f'  mda "cat > {out}/msg.$$"\n')
  rc.chmod(0o600)
  env = dict(os.environ, HOME=str(workdir), FETCHMAILHOME=str(workdir),
             FETCHMAILUSER="root", LC_ALL="C")
  done = subprocess.run(
      ["fetchmail", *args, "--fetchmailrc", str(rc), "--nodetach",
       "--nosyslog", "--idfile", str(workdir / "fetchids"), "-v"],
      env=env, capture_output=True, text=True, timeout=120)
  # 0: mail delivered, 1: no mail waiting; anything else is a failure.
  assert done.returncode in (0, 1), done.stdout + done.stderr
  delivered = [p.read_bytes() for p in out.iterdir()]
  for p in out.iterdir():
    p.unlink()
  return delivered


# -- pop.auth ----------------------------------------------------------------

def make_popauth(directory, entries):
  """Builds a pop.auth and its key with the real popauth tool."""
  db = pathlib.Path(directory) / "pop.auth"
  key = pathlib.Path(directory) / "pop.auth.key"
  run(POPAUTH, "-file", db, "-key", key, "-init", input="y\n")
  for user, secret in entries.items():
    run(POPAUTH, "-file", db, "-key", key, "-user", user, "-stdin",
        input=secret + "\n")
  return db, key


# -- configuration -------------------------------------------------------------

def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _toml_value(v):
  if isinstance(v, bool):
    return "true" if v else "false"
  if isinstance(v, int):
    return str(v)
  if isinstance(v, (list, tuple)):
    return "[" + ", ".join(_toml_value(x) for x in v) + "]"
  s = str(v).replace("\\", "\\\\").replace('"', '\\"')
  return f'"{s}"'


def render_config(sections):
  """TOML text for {section: {key: value}}; a value of None is left out."""
  out = []
  for name, keys in sections.items():
    out.append(f"[{name}]")
    for k, v in keys.items():
      if v is not None:
        out.append(f"{k} = {_toml_value(v)}")
    out.append("")
  return "\n".join(out)


def base_config(port, popauth_db, popauth_key, worker, penalty_file):
  return {
      "server": {
          "listen": [f"127.0.0.1:{port}"],
          "hostname": HOSTNAME,
          "max_sessions": 20,
          "max_sessions_per_address": 20,
      },
      "auth": {
          "pam_service": "popguard",
          "popauth_file": str(popauth_db),
          "popauth_key": str(popauth_key),
          "min_uid": 1000,
          "fail_delay_ms": FAIL_DELAY_MS,
          "max_failures": 3,
          # Failures from 127.0.0.1 add up across a test: keep the growing
          # delay short.  Each test has its own penalty file, so no ban
          # or delay carries over to the next.
          "max_delay_ms": 2 * FAIL_DELAY_MS,
          "penalty_file": str(penalty_file),
          # The tests that use USER/PASS need clear text until STLS
          # exists; test_auth_failures checks the default separately.
          "cleartext": "always",
          "apop": "allow",
      },
      "mailbox": {"format": "maildir", "maildir": "~/Maildir"},
      "session": {
          "login_timeout": 30,
          "idle_timeout": 60,
          "max_bad_commands": 10,
      },
      "privsep": {
          "front_user": FRONT_USER,
          "empty_dir": EMPTY_DIR,
          "worker_path": str(worker),
      },
      "log": {"facility": "mail"},
  }


def merge(base, overrides):
  for section, keys in (overrides or {}).items():
    base.setdefault(section, {}).update(keys)
  return base


# -- logs ----------------------------------------------------------------------

_PAIR = re.compile(r'([A-Za-z_][\w.-]*)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_record(line):
  """The key=value pairs of one log line, quotes removed."""
  fields = {}
  for key, value in _PAIR.findall(line):
    if value.startswith('"') and value.endswith('"') and len(value) >= 2:
      value = value[1:-1]
    fields.setdefault(key, value)
  return fields


def records(text, event=None):
  out = []
  for line in text.splitlines():
    if "event=" not in line:
      continue
    rec = parse_record(line)
    if event is None or rec.get("event") == event:
      out.append(rec)
  return out


# -- processes -------------------------------------------------------------------

def _proc_group_members(pgid):
  """Pids whose process group or session is `pgid` (what we started)."""
  found = []
  for entry in os.listdir("/proc"):
    if not entry.isdigit():
      continue
    try:
      with open(f"/proc/{entry}/stat", "rb") as f:
        stat = f.read()
    except OSError:
      continue
    fields = stat[stat.rfind(b")") + 2:].split()
    state, pgrp, session = fields[0], int(fields[2]), int(fields[3])
    if state == b"Z":
      continue
    if pgrp == pgid or session == pgid:
      found.append(int(entry))
  return found


def wait_for_port(port, proc, log_path, timeout=10.0):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if proc.poll() is not None:
      raise AssertionError(
          f"popguard exited with {proc.returncode} before listening:\n"
          + pathlib.Path(log_path).read_text(errors="replace"))
    try:
      with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
        s.settimeout(5)
        greeting = s.recv(512)
        s.sendall(b"QUIT\r\n")
        s.recv(512)
        if greeting.startswith(b"+OK"):
          return
    except OSError:
      pass
    time.sleep(0.05)
  raise AssertionError(f"popguard did not answer on port {port}:\n"
                       + pathlib.Path(log_path).read_text(errors="replace"))


def socket_handover(pairs, pid_offset=0):
  """A preexec_fn that does what systemd does for a socket unit: the
  sockets of (socket, name) `pairs` on descriptors 3, 4, ... and
  LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES set.  pid_offset makes
  LISTEN_PID name another process.  Use with close_fds=False."""
  def hand_over():
    # Out of the way first, so that no target number is a source.
    high = [fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD, 100)
            for sock, _ in pairs]
    for i, fd in enumerate(high):
      os.dup2(fd, 3 + i)
      os.close(fd)
    os.environ["LISTEN_PID"] = str(os.getpid() + pid_offset)
    os.environ["LISTEN_FDS"] = str(len(pairs))
    os.environ["LISTEN_FDNAMES"] = ":".join(n for _, n in pairs)
  return hand_over


class Daemon:
  """One popguard process in the foreground, logging to a file."""

  def __init__(self, workdir, config_sections, args=(), activated=()):
    """activated: (listening socket, name) pairs handed over as systemd
    does (LISTEN_FDS from descriptor 3); the first one's port is port."""
    self.workdir = pathlib.Path(workdir)
    self.sections = config_sections
    self.config_path = self.workdir / "popguard.toml"
    self.log_path = self.workdir / "popguard.log"
    self.activated = list(activated)
    if self.activated:
      self.port = self.activated[0][0].getsockname()[1]
    else:
      self.port = int(
          config_sections["server"]["listen"][0].rsplit(":", 1)[1])
    self.args = list(args)
    self.proc = None
    self.clients = []
    self.write_config()

  def write_config(self, sections=None):
    if sections is not None:
      self.sections = sections
    self.config_path.write_text(render_config(self.sections))

  def start(self):
    self._log = open(self.log_path, "ab")
    handover = {}
    if self.activated:
      # close_fds=False keeps 3, 4, ... open; every other descriptor
      # Python made is close-on-exec anyway.
      handover = {"preexec_fn": socket_handover(self.activated),
                  "close_fds": False}
    self.proc = subprocess.Popen(
        [str(POPGUARD), "-f", "-c", str(self.config_path)] + self.args,
        stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
        start_new_session=True, **handover)
    # The probe connection shows up in the log; tests count from here on.
    wait_for_port(self.port, self.proc, self.log_path)
    return self

  @property
  def pid(self):
    return self.proc.pid

  def log(self):
    return self.log_path.read_text(errors="replace")

  def records(self, event=None):
    return records(self.log(), event)

  def wait_record(self, event, timeout=10.0, count=1, **match):
    """Waits until `count` records of `event` match every key=value given."""
    deadline = time.monotonic() + timeout
    while True:
      found = [r for r in self.records(event)
               if all(r.get(k) == str(v) for k, v in match.items())]
      if len(found) >= count:
        return found
      if time.monotonic() > deadline:
        raise AssertionError(
            f"no {count} record(s) event={event} {match} in log:\n"
            + self.log())
      time.sleep(0.05)

  def pop3(self, timeout=10):
    """A poplib client, closed at stop() if the test left it open."""
    client = poplib.POP3("127.0.0.1", self.port, timeout=timeout)
    self.clients.append(client)
    return client

  def login(self, user=MAIL_USER, password=MAIL_PASSWORD):
    """A poplib client logged in with USER and PASS."""
    client = self.pop3()
    client.user(user)
    client.pass_(password)
    return client

  def signal(self, sig):
    os.kill(self.proc.pid, sig)

  def stop(self, timeout=15.0):
    """SIGTERM, wait, and make sure nothing we started is left running."""
    if self.proc is None:
      return None
    # A client a test left open would hold its session, and SIGTERM
    # rightly waits for sessions to end.
    for client in self.clients:
      client.close()
    if self.proc.poll() is None:
      os.kill(self.proc.pid, signal.SIGTERM)
      try:
        self.proc.wait(timeout=timeout)
      except subprocess.TimeoutExpired:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=5)
        raise AssertionError("popguard ignored SIGTERM for "
                             f"{timeout} s:\n" + self.log())
    check_no_strays(self.proc.pid, self.log)
    self._log.close()
    return self.proc.returncode


def check_no_strays(pgid, describe=lambda: "", timeout=5.0):
  """Fails, after killing them, if processes of group `pgid` outlive it."""
  deadline = time.monotonic() + timeout
  left = _proc_group_members(pgid)
  while left and time.monotonic() < deadline:
    time.sleep(0.05)
    left = _proc_group_members(pgid)
  if left:
    for pid in left:
      try:
        os.kill(pid, signal.SIGKILL)
      except ProcessLookupError:
        pass
    raise AssertionError(f"processes left behind by popguard: {left}\n"
                         + describe())


def make_shared_worker_dir():
  """A copy of the worker that every mail user may execute.

  The build directory may sit where the mail user cannot reach (under
  /root, say); the worker runs as that user, so it gets a copy in a
  directory any user can traverse.
  """
  d = pathlib.Path(tempfile.mkdtemp(prefix="popguard-it-"))
  d.chmod(0o755)
  target = d / "popguard-worker"
  shutil.copy2(WORKER, target)
  target.chmod(0o755)
  return d, target
