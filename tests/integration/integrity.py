"""Mailbox integrity: a corpus of unique messages, a real delivery agent,
the mail spool's layout, parsers for what is on disk, a raw POP3 client
and the session's processes seen from outside.

Used by test_integrity_kill, test_uidl_stability and test_mda_interop.
Every message of a corpus carries a unique Message-ID, so a mailbox read
back can be compared with what was put in, message by message and byte by
byte: a message missing, present twice, cut short or with bytes of
another is each told apart.
"""

import collections
import grp
import hashlib
import os
import pathlib
import poplib
import pwd
import random
import re
import socket
import stat
import subprocess
import threading
import time

import harness

PROCMAIL = "/usr/bin/procmail"
SPOOL = pathlib.Path("/var/mail")
DOMAIN = "integrity.popguard.test"

_MSGID = re.compile(rb"^Message-ID:[ \t]*<([^>]*)>", re.I | re.M)


# -- messages ------------------------------------------------------------------

def message_id(message):
  """The Message-ID of a message (bytes, LF line ends), without <>."""
  head = message.split(b"\n\n", 1)[0]
  m = _MSGID.search(head)
  return m.group(1).decode("ascii", "replace") if m else None


def digest(message):
  return hashlib.sha256(message).hexdigest()[:16]


class Corpus:
  """Unique test messages, remembered by Message-ID.

  Bodies hold what an mbox must survive: a line starting "From " (which a
  delivery agent quotes and RETR unquotes), lines starting with dots, long
  and short lines.  None holds a line starting ">From " (mboxo cannot keep
  it) or ends in an empty line (an mbox separator would swallow it).
  """

  def __init__(self, seed=1):
    self.rng = random.Random(seed)
    self.by_id = {}
    self.count = 0

  def make(self, tag=None, size=None, extra_headers=b""):
    self.count += 1
    tag = tag or f"m{self.count:05d}.{self.rng.getrandbits(32):08x}"
    mid = f"{tag}@{DOMAIN}"
    if size is None:
      size = self.rng.choice((300, 900, 2500, 6000))
    head = (b"From: Integrity Sender <sender@example.org>\n"
            b"To: mailbox owner <owner@example.org>\n"
            b"Subject: integrity " + tag.encode() + b"\n"
            b"Message-ID: <" + mid.encode() + b">\n" + extra_headers +
            b"\n")
    lines = [b"Body of " + tag.encode() + b".",
             b"From the start of a line, which mbox quotes.",
             b".a line that starts with a dot",
             b"..two dots"]
    total = sum(len(x) + 1 for x in lines)
    n = 0
    while total < size and size > 50000:
      line = b"%07d a line of a large message, there to make copies slow" % n
      lines.append(line)
      total += len(line) + 1
      n += 1
    while total < size:
      width = self.rng.randrange(1, 78)
      line = b"%06d " % n + bytes(
          self.rng.choice(b"abcdefghijklmnopqrstuvwxyz0123456789 ,.;-")
          for _ in range(width))
      line = line.rstrip() or b"x"
      lines.append(line)
      total += len(line) + 1
      n += 1
    lines.append(b"End of " + tag.encode() + b".")
    message = head + b"\n".join(lines) + b"\n"
    self.by_id[mid] = message
    return mid, message


# -- on disk -------------------------------------------------------------------

def unquote_mboxrd(line):
  """One '>' off a line matching /^>+From / (what RETR does)."""
  if line.startswith(b">") and line.lstrip(b">").startswith(b"From "):
    return line[1:]
  return line


def quote_mboxrd(line):
  if line.lstrip(b">").startswith(b"From "):
    return b">" + line
  return line


def mbox_entry(message, sender="sender@example.org",
               date="Tue Nov 14 22:13:20 2023"):
  """One message as a delivery agent appends it: From_ line, quoted text,
  an empty separator line."""
  body = b"\n".join(quote_mboxrd(l) for l in message.split(b"\n")[:-1])
  return (f"From {sender}  {date}\n".encode() + body + b"\n\n")


def parse_mbox(data):
  """The messages of an mbox as RETR sends them (LF line ends).

  RFC 4155 as worker/mbox.h reads it: a From_ line starts a message at
  the start of the file or after an empty line; the empty line before a
  From_ line, and one at the end of the file, belong to no message.
  Returns (messages, problems): problems lists what is not a well-formed
  mbox (text before the first From_ line, a missing final newline).
  """
  problems = []
  if not data:
    return [], problems
  lines = data.split(b"\n")
  if lines[-1] != b"":
    problems.append("mbox does not end with a newline")
  else:
    lines.pop()
  starts = []
  prev_blank = True
  for i, line in enumerate(lines):
    if prev_blank and line.startswith(b"From "):
      starts.append(i)
    prev_blank = line == b""
  if not starts or starts[0] != 0:
    problems.append("text before the first From_ line")
  messages = []
  for k, s in enumerate(starts):
    end = starts[k + 1] if k + 1 < len(starts) else len(lines)
    body = lines[s + 1:end]
    if body and body[-1] == b"":
      body = body[:-1]  # the separator
    messages.append(b"".join(unquote_mboxrd(l) + b"\n" for l in body))
  return messages, problems


def maildir_messages(maildir):
  """{path: bytes} for the message files in new/ and cur/."""
  out = {}
  for sub in ("new", "cur"):
    d = pathlib.Path(maildir) / sub
    if not d.is_dir():
      continue
    for p in d.iterdir():
      if p.name.startswith(".") or not p.is_file():
        continue
      try:
        out[p] = p.read_bytes()
      except FileNotFoundError:
        pass  # renamed or removed while listing
  return out


def spool_leftovers(user):
  """Files beside /var/mail/USER that a session left: dotlock, temp."""
  return sorted(p.name for p in SPOOL.iterdir()
                if p.name.startswith(user + ".") and
                (p.name == user + ".lock" or ".popguard." in p.name))


# -- the check ----------------------------------------------------------------

class Ledger:
  """What must be in a mailbox, kept up to date across sessions.

  present: ids the mailbox held at the last check (or was filled with).
  Each session records the ids it marked deleted; each delivery the id it
  delivered.  check() compares the mailbox's messages with that.
  """

  def __init__(self, corpus):
    self.corpus = corpus
    self.present = set()
    self.delivered_since = set()
    self.lock = threading.Lock()

  def delivered(self, mid):
    with self.lock:
      self.delivered_since.add(mid)

  def check(self, found, doomed=(), all_or_nothing=True, committed=None):
    """Compares `found` (messages, bytes) with what must be there.

    doomed: ids the session marked deleted.  all_or_nothing: whether the
    format promises an atomic commit (mbox does; a Maildir removes one
    file at a time).  committed: True if the client saw +OK to QUIT (all
    doomed must be gone), False if it saw -ERR (none may be gone), None
    if it saw nothing.  Returns (problems, outcome) with outcome one of
    "none", "all", "partial" for the doomed messages.  The ledger then
    takes `found` as its state; no delivery may be under way meanwhile.
    """
    problems = []
    ids = []
    for m in found:
      mid = message_id(m)
      if mid is None or mid not in self.corpus.by_id:
        problems.append(f"unknown or damaged message {digest(m)}: "
                        f"{m[:120]!r}...")
        continue
      if m != self.corpus.by_id[mid]:
        want = self.corpus.by_id[mid]
        problems.append(f"damaged {mid}: {len(m)} octets, want "
                        f"{len(want)}, digest {digest(m)} want "
                        f"{digest(want)}")
      ids.append(mid)
    counts = collections.Counter(ids)
    for mid, n in counts.items():
      if n > 1:
        problems.append(f"duplicated {mid} x{n}")
    have = set(counts)
    with self.lock:
      delivered = set(self.delivered_since)
    known = self.present | delivered
    doomed = set(doomed) & known
    for mid in sorted(known - doomed - have):
      problems.append(f"lost {mid}")
    for mid in sorted(have - known):
      problems.append(f"appeared from nowhere {mid}")
    gone = doomed - have
    if not gone:
      outcome = "none"
    elif gone == doomed:
      outcome = "all"
    else:
      outcome = "partial"
    if outcome == "partial" and all_or_nothing:
      problems.append(f"deletion half done: gone {sorted(gone)}, kept "
                      f"{sorted(doomed & have)}")
    if committed is True and outcome != "all" and doomed:
      problems.append(f"QUIT said +OK but {sorted(doomed & have)} remain")
    if committed is False and outcome != "none":
      problems.append(f"QUIT said -ERR but {sorted(gone)} are gone")
    # The next check starts from what is there now, so that one problem
    # is reported once, not again at every later check.
    with self.lock:
      self.present = have
      self.delivered_since.clear()
    return problems, outcome


# -- the spool ----------------------------------------------------------------

class SpoolLayout:
  """Debian's /var/mail (root:mail 2775) and USER's mbox in it (USER:mail
  0660), restored to what was there on close()."""

  def __init__(self, user):
    self.user = user
    self.path = SPOOL / user
    st = SPOOL.stat()
    self._dir = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    self._old = None
    if self.path.exists():
      s = self.path.stat()
      self._old = (self.path.read_bytes(), stat.S_IMODE(s.st_mode),
                   s.st_uid, s.st_gid)
    self.mail_gid = grp.getgrnam("mail").gr_gid
    os.chown(SPOOL, 0, self.mail_gid)
    SPOOL.chmod(0o2775)

  def write(self, data):
    pw = pwd.getpwnam(self.user)
    tmp = self.path.with_name(self.user + ".integrity-setup")
    tmp.write_bytes(data)
    os.chown(tmp, pw.pw_uid, self.mail_gid)
    tmp.chmod(0o660)
    os.rename(tmp, self.path)

  def close(self):
    for p in SPOOL.iterdir():
      if p.name.startswith(self.user + "."):
        p.unlink()
    if self._old is None:
      if self.path.exists():
        self.path.unlink()
    else:
      data, mode, uid, gid = self._old
      self.path.write_bytes(data)
      os.chown(self.path, uid, gid)
      self.path.chmod(mode)
    mode, uid, gid = self._dir
    os.chown(SPOOL, uid, gid)
    SPOOL.chmod(mode)


# -- delivery -----------------------------------------------------------------

class Procmail:
  """Delivers through procmail as the user, the way Postfix's
  mailbox_command runs it, with a ~/.procmailrc naming the mailbox.

  LOCKSLEEP=1: procmail retries a taken dotlock after 1 s rather than its
  default 8, so a delivery that meets popguard's dotlock (held for
  milliseconds at login and at QUIT) waits 1 s, not 8.
  """

  def __init__(self, user, destination):
    self.user = user
    self.pw = pwd.getpwnam(user)
    self.rc = pathlib.Path(self.pw.pw_dir) / ".procmailrc"
    self.rc.write_text(f"LOCKSLEEP=1\nDEFAULT={destination}\n")
    os.chown(self.rc, self.pw.pw_uid, self.pw.pw_gid)
    self.rc.chmod(0o644)

  def start(self):
    """A procmail process reading its message from stdin."""
    return subprocess.Popen(
        [PROCMAIL, "-f", "sender@example.org"], stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        cwd=self.pw.pw_dir, user=self.pw.pw_uid, group=self.pw.pw_gid,
        extra_groups=[],
        env={"HOME": self.pw.pw_dir, "LOGNAME": self.user,
             "USER": self.user, "PATH": "/usr/bin:/bin",
             "SHELL": "/bin/sh"})

  def deliver(self, message, timeout=60):
    """Runs procmail; returns (exit status, seconds taken)."""
    t = time.monotonic()
    proc = self.start()
    try:
      proc.communicate(message, timeout=timeout)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()
    return proc.returncode, time.monotonic() - t

  def close(self):
    if self.rc.exists():
      self.rc.unlink()


def deliver_as_root(user, message, timeout=60):
  """`procmail -d USER` as root, as an MTA's local delivery runs it."""
  t = time.monotonic()
  r = subprocess.run([PROCMAIL, "-f", "sender@example.org", "-d", user],
                     input=message, capture_output=True, timeout=timeout)
  return r.returncode, time.monotonic() - t


class DeliveryLoop:
  """Delivers new corpus messages one after another from a child process.

  A process, not a thread, so that the test's own timing (a kill a few
  milliseconds after QUIT) does not wait for the interpreter lock.
  pause() holds further deliveries and waits for the one in progress, so
  a check sees a mailbox no delivery is writing to; it also collects what
  was delivered into the corpus and the ledger.  Every delivery is timed:
  stats() gives the count, failures and the longest wait.
  """

  def __init__(self, mda, corpus, ledger, interval=(0.05, 0.35)):
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
    self.mda = mda
    self.corpus = corpus
    self.ledger = ledger
    self.interval = interval
    self.gate = ctx.Lock()
    self.stop_flag = ctx.Event()
    self.recv, self.send = ctx.Pipe(duplex=False)
    self.times = []
    self.failures = []
    self.proc = ctx.Process(target=self._run, daemon=True)

  def start(self):
    self.proc.start()
    self.send.close()
    return self

  def _record(self, mid, message, rc, took):
    self.corpus.by_id[mid] = message
    self.times.append(took)
    if rc == 0:
      self.ledger.delivered(mid)
    else:
      self.failures.append((mid, rc))

  def _collect(self):
    while self.recv.poll():
      try:
        self._record(*self.recv.recv())
      except EOFError:
        return

  def deliver_one(self):
    """One delivery now, from this process, between the loop's own."""
    self.pause()
    try:
      mid, message = self.corpus.make(f"s{self.corpus.count + 1:05d}")
      rc, took = self.mda.deliver(message)
      self._record(mid, message, rc, took)
      return mid, rc, took
    finally:
      self.resume()

  def _run(self):
    self.recv.close()
    rng = random.Random(7)
    n = 0
    while not self.stop_flag.is_set():
      with self.gate:
        if self.stop_flag.is_set():
          break
        n += 1
        mid, message = self.corpus.make(
            f"d{n:05d}.{rng.getrandbits(32):08x}")
        rc, took = self.mda.deliver(message)
        self.send.send((mid, message, rc, took))
      self.stop_flag.wait(rng.uniform(*self.interval))
    self.send.close()
    os._exit(0)

  def pause(self, timeout=120):
    if not self.gate.acquire(timeout=timeout):
      raise AssertionError(f"a delivery did not finish in {timeout} s")
    self._collect()

  def resume(self):
    self.gate.release()

  def stop(self):
    self.stop_flag.set()
    self.proc.join(timeout=120)
    self._collect()

  def stats(self):
    return {"deliveries": len(self.times), "failed": len(self.failures),
            "longest_s": round(max(self.times, default=0.0), 3)}


# -- a raw POP3 client --------------------------------------------------------

class RawPop3:
  """A POP3 client on a plain socket, for stopping half-way: send a
  command without waiting, read a part of a response, give up at once."""

  def __init__(self, port, timeout=10):
    self.sock = socket.create_connection(("127.0.0.1", port),
                                         timeout=timeout)
    self.buf = b""
    self.greeting = self.line()

  def line(self):
    while b"\r\n" not in self.buf:
      chunk = self.sock.recv(65536)
      if not chunk:
        raise EOFError("connection closed")
      self.buf += chunk
    line, self.buf = self.buf.split(b"\r\n", 1)
    return line

  def send(self, text):
    self.sock.sendall(text.encode() + b"\r\n")

  def cmd(self, text):
    self.send(text)
    return self.line()

  def multiline(self):
    out = []
    while True:
      line = self.line()
      if line == b".":
        return out
      out.append(line[1:] if line.startswith(b".") else line)

  def login(self, user, password):
    r = self.cmd(f"USER {user}")
    if not r.startswith(b"+OK"):
      return r
    return self.cmd(f"PASS {password}")

  def read_some(self, n):
    """At least n octets of what follows (or fewer at end of stream)."""
    while len(self.buf) < n:
      chunk = self.sock.recv(65536)
      if not chunk:
        break
      self.buf += chunk
    return self.buf[:n]

  def drain_status(self, timeout):
    """The next status line if one comes within timeout, else None."""
    self.sock.settimeout(timeout)
    try:
      return self.line()
    except (OSError, EOFError):
      return None

  def close(self):
    try:
      self.sock.close()
    except OSError:
      pass


def uidl_map(client):
  """{number: uidl} from a poplib client."""
  _, lines, _ = client.uidl()
  out = {}
  for line in lines:
    n, u = line.split(b" ", 1)
    out[int(n)] = u.decode("ascii")
  return out


def retr_all(client):
  """Every message of a poplib session as stored (LF line ends)."""
  count, _ = client.stat()
  out = []
  for n in range(1, count + 1):
    _, lines, _ = client.retr(n)
    out.append(b"".join(l + b"\n" for l in lines))
  return out


def valid_uidl(u):
  return 1 <= len(u) <= 70 and all(0x21 <= ord(c) <= 0x7e for c in u)


def apop_login(daemon, timeout=10):
  p = poplib.POP3("127.0.0.1", daemon.port, timeout=timeout)
  try:
    p.apop(harness.MAIL_USER, harness.APOP_SECRET)
  except BaseException:
    p.close()
    raise
  return p


def login_until(daemon, deadline_s, how="apop"):
  """Logs in, retrying while the mailbox is in use or the daemon is not
  answering, for up to deadline_s.  Returns (client, seconds, tries)."""
  t = time.monotonic()
  tries = 0
  last = None
  while True:
    tries += 1
    try:
      if how == "apop":
        return apop_login(daemon), time.monotonic() - t, tries
      p = poplib.POP3("127.0.0.1", daemon.port, timeout=10)
      p.user(harness.MAIL_USER)
      p.pass_(harness.MAIL_PASSWORD)
      return p, time.monotonic() - t, tries
    except (poplib.error_proto, OSError, EOFError) as e:
      last = e
    if time.monotonic() - t > deadline_s:
      raise AssertionError(f"no login within {deadline_s} s after {tries} "
                           f"tries: {last!r}")
    time.sleep(0.05)


# -- processes ----------------------------------------------------------------

def _stat_fields(pid):
  with open(f"/proc/{pid}/stat", "rb") as f:
    data = f.read()
  return data[data.rfind(b")") + 2:].split()


def session_processes(session_id):
  """[(pid, ppid, uid, exe)] of live processes in the daemon's session."""
  out = []
  for entry in os.listdir("/proc"):
    if not entry.isdigit():
      continue
    pid = int(entry)
    try:
      fields = _stat_fields(pid)
      if fields[0] == b"Z" or int(fields[3]) != session_id:
        continue
      uid = os.stat(f"/proc/{pid}").st_uid
      try:
        exe = os.readlink(f"/proc/{pid}/exe")
      except OSError:
        exe = ""
      out.append((pid, int(fields[1]), uid, exe))
    except (OSError, IndexError, ValueError):
      continue
  return out


def user_workers(uid, worker_path):
  """Pids of popguard-worker processes running as uid, anywhere."""
  want = os.path.realpath(worker_path)
  out = []
  for entry in os.listdir("/proc"):
    if not entry.isdigit():
      continue
    try:
      if os.stat(f"/proc/{entry}").st_uid != uid:
        continue
      if os.readlink(f"/proc/{entry}/exe") != want:
        continue
      if _stat_fields(int(entry))[0] == b"Z":
        continue
    except (OSError, IndexError):
      continue
    out.append(int(entry))
  return out


def find_session(session_id, uid, worker_path, timeout=5.0):
  """(worker pid, monitor pid) of the logged-in session of uid."""
  want = os.path.realpath(worker_path)
  deadline = time.monotonic() + timeout
  while True:
    for pid, ppid, puid, exe in session_processes(session_id):
      if puid == uid and exe == want:
        return pid, ppid
    if time.monotonic() > deadline:
      raise AssertionError(f"no worker for uid {uid} in session "
                           f"{session_id}: {session_processes(session_id)}")
    time.sleep(0.002)


def wait_gone(pids, timeout):
  """Seconds until none of pids runs (zombies count as gone)."""
  t = time.monotonic()
  while True:
    alive = []
    for pid in pids:
      try:
        if _stat_fields(pid)[0] != b"Z":
          alive.append(pid)
      except (OSError, IndexError):
        pass
    if not alive:
      return time.monotonic() - t
    if time.monotonic() - t > timeout:
      raise AssertionError(f"processes {alive} still running after "
                           f"{timeout} s")
    time.sleep(0.01)
