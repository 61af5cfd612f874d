"""popguard beside a real delivery agent (procmail), and the one-session
rule.

- Delivery while a session is logged in is not held up: procmail returns
  within seconds, and the session's commit keeps the new mail.
- A second session on the mailbox gets -ERR [IN-USE], on record as
  event=end reason=in-use; the mailbox is free again however the first
  session ended: QUIT, a dropped connection, an idle timeout, too many bad
  commands, a killed worker, a killed monitor.
- A worker killed during the commit leaves no dotlock that holds up the
  next delivery.
"""

import os
import poplib
import pwd
import signal
import time

import pytest

import harness
import integrity

FORMATS = ["maildir", "mbox"]
# A delivery takes tens of milliseconds, or a second more when the mbox
# was read since its last write (procmail then sleeps so that the mtime
# moves past the atime, for "new mail" checks).  One that waited for the
# session would never end: the session stays open meanwhile.
DELIVERY_LIMIT_S = 3.0
FREE_AGAIN_S = 10.0


class Box:
  """The mail user's mailbox in one format, filled from a corpus."""

  def __init__(self, fmt):
    self.fmt = fmt
    self.corpus = integrity.Corpus(seed=31)
    self.ledger = integrity.Ledger(self.corpus)
    self.layout = None
    self.maildir = harness.home_of(harness.MAIL_USER) / "Maildir"
    if fmt == "mbox":
      self.layout = integrity.SpoolLayout(harness.MAIL_USER)
      destination = str(self.layout.path)
    else:
      destination = str(self.maildir) + "/"
    self.mda = integrity.Procmail(harness.MAIL_USER, destination)

  def fill(self, n):
    msgs = [self.corpus.make() for _ in range(n)]
    if self.fmt == "mbox":
      self.layout.write(b"".join(integrity.mbox_entry(m) for _, m in msgs))
    else:
      harness.fill_maildir(harness.MAIL_USER, [
          ("new", f"{1700000300 + i}.M{i}P{i}.{harness.HOSTNAME}", m)
          for i, (_, m) in enumerate(msgs)])
    self.ledger.present = {mid for mid, _ in msgs}
    return msgs

  def add(self, mid, m):
    """Puts a message in before the session, as the fixture's own."""
    if self.fmt == "mbox":
      with open(self.layout.path, "ab") as f:
        f.write(integrity.mbox_entry(m))
    else:
      pw = pwd.getpwnam(harness.MAIL_USER)
      path = self.maildir / "new" / f"1700009999.M9P9.{harness.HOSTNAME}"
      path.write_bytes(m)
      os.chown(path, pw.pw_uid, pw.pw_gid)
    self.ledger.present.add(mid)

  def deliver(self, as_root=False):
    """One new message; (Message-ID, exit status, seconds)."""
    mid, m = self.corpus.make()
    if as_root and self.fmt == "mbox":
      rc, took = integrity.deliver_as_root(harness.MAIL_USER, m)
    else:
      rc, took = self.mda.deliver(m)
    if rc == 0:
      self.ledger.delivered(mid)
    return mid, rc, took

  def on_disk(self):
    if self.fmt == "mbox":
      found, problems = integrity.parse_mbox(self.layout.path.read_bytes())
      assert not problems, problems
      return found
    return list(integrity.maildir_messages(self.maildir).values())

  def close(self):
    self.mda.close()
    if self.layout:
      self.layout.close()


@pytest.fixture(params=FORMATS)
def box(request, accounts):
  b = Box(request.param)
  yield b
  b.close()


@pytest.fixture
def box_daemon(start_daemon, box):
  return start_daemon({"mailbox": {"format": box.fmt}})


def ids_by_number(p):
  count, _ = p.stat()
  out = {}
  for n in range(1, count + 1):
    _, lines, _ = p.top(n, 0)
    out[n] = integrity.message_id(b"".join(l + b"\n" for l in lines) + b"\n")
  return out


def test_delivery_during_an_idle_session_is_not_held_up(box, box_daemon):
  box.fill(5)
  p = box_daemon.login()
  ids = ids_by_number(p)
  took = []
  for as_root in (True, False, True):
    _, rc, t = box.deliver(as_root=as_root)
    assert rc == 0
    took.append(t)
  assert max(took) < DELIVERY_LIMIT_S, took
  # Mail that came in meanwhile is not part of this session ...
  assert p.stat()[0] == 5
  # ... and survives its commit.
  doomed = {ids[2], ids[4]}
  p.dele(2)
  p.dele(4)
  assert p.quit().startswith(b"+OK")
  problems, outcome = box.ledger.check(box.on_disk(), doomed,
                                       committed=True)
  assert not problems and outcome == "all", problems
  p = box_daemon.login()
  assert p.stat()[0] == 6
  p.quit()


def test_delivery_during_retr_and_between_dele_and_quit(box, box_daemon):
  box.fill(4)
  box.add(*box.corpus.make(size=400_000))
  p = box_daemon.login()
  count, _ = p.stat()
  took = []
  for n in range(1, count + 1):
    p.retr(n)
    took.append(box.deliver()[2])
  ids = ids_by_number(p)
  p.dele(1)
  took.append(box.deliver()[2])
  assert p.quit().startswith(b"+OK")
  assert max(took) < DELIVERY_LIMIT_S, took
  problems, outcome = box.ledger.check(box.on_disk(), {ids[1]},
                                       committed=True)
  assert not problems and outcome == "all", problems


# -- the one-session rule -----------------------------------------------------

def second_is_refused(daemon):
  p = daemon.pop3()
  p.user(harness.MAIL_USER)
  with pytest.raises(poplib.error_proto) as e:
    p.pass_(harness.MAIL_PASSWORD)
  assert e.value.args[0].startswith(b"-ERR [IN-USE]"), e.value.args[0]
  p.close()


def free_again_within(daemon, limit=FREE_AGAIN_S):
  p, took, _ = integrity.login_until(daemon, limit, how="pass")
  p.stat()
  integrity.uidl_map(p)
  p.quit()
  return took


def session_pids(daemon):
  uid = pwd.getpwnam(harness.MAIL_USER).pw_uid
  return integrity.find_session(daemon.pid, uid, daemon.sections[
      "privsep"]["worker_path"])


def end_first(how, daemon, p):
  if how == "quit":
    p.quit()
  elif how == "drop":
    p.close()
  elif how == "bad-commands":
    for _ in range(10):
      try:
        p._shortcmd("XNOSUCH")
      except (poplib.error_proto, OSError, EOFError):
        pass
    p.close()
  elif how == "kill-worker":
    worker, _ = session_pids(daemon)
    os.kill(worker, signal.SIGKILL)
  elif how == "kill-monitor":
    worker, monitor = session_pids(daemon)
    os.kill(monitor, signal.SIGKILL)
    # The orphaned worker serves on until its client goes.
    p.close()
  elif how == "timeout":
    pass  # idle_timeout = 2 below
  else:
    raise ValueError(how)


ENDINGS = ["quit", "drop", "bad-commands", "timeout", "kill-worker",
           "kill-monitor"]


@pytest.mark.parametrize("how", ENDINGS)
def test_second_session_is_in_use_until_the_first_ends(box, start_daemon,
                                                       how):
  box.fill(3)
  overrides = {"mailbox": {"format": box.fmt}}
  if how == "timeout":
    overrides["session"] = {"idle_timeout": 2}
  d = start_daemon(overrides)
  first = d.login()
  assert first.stat()[0] == 3
  second_is_refused(d)
  d.wait_record("end", reason="in-use", user=harness.MAIL_USER)
  end_first(how, d, first)
  took = free_again_within(d)
  assert took < FREE_AGAIN_S
  if box.fmt == "mbox":
    assert integrity.spool_leftovers(harness.MAIL_USER) == []
  problems, _ = box.ledger.check(box.on_disk())
  assert not problems, problems


# -- kills during the commit and delivery -------------------------------------

def test_worker_killed_during_the_commit_leaves_no_lock_for_delivery(
    start_daemon, accounts):
  box = Box("mbox")
  try:
    msgs = box.fill(6)
    # A large message makes the commit long enough to be caught.
    big_id, big = box.corpus.make("filler", size=2_000_000)
    box.layout.write(box.layout.path.read_bytes() +
                     integrity.mbox_entry(big))
    box.ledger.present.add(big_id)
    d = start_daemon({"mailbox": {"format": "mbox"}})
    lock = integrity.SPOOL / (harness.MAIL_USER + ".lock")
    c = integrity.RawPop3(d.port)
    assert c.login(harness.MAIL_USER, harness.MAIL_PASSWORD).startswith(
        b"+OK")
    worker, _ = session_pids(d)
    assert c.cmd("DELE 1").startswith(b"+OK")
    c.send("QUIT")
    deadline = time.monotonic() + 5
    while not lock.exists() and time.monotonic() < deadline:
      pass
    assert lock.exists(), "the commit never took the dotlock"
    os.kill(worker, signal.SIGKILL)
    killed = time.monotonic()
    c.close()
    while lock.exists() and time.monotonic() - killed < FREE_AGAIN_S:
      time.sleep(0.005)
    released = time.monotonic() - killed
    assert released < 1.0, f"dotlock held {released:.3f} s after the kill"
    # procmail as an MTA runs it, with its default 8 s between lock tries:
    # it finds no lock and delivers at once.
    _, rc, took = box.deliver(as_root=True)
    assert rc == 0 and took < DELIVERY_LIMIT_S, took
    # Killed before the rename or after it: message 1 is gone or there,
    # and everything else is there, whole.
    problems, _ = box.ledger.check(box.on_disk(), {msgs[0][0]})
    assert not problems, problems
    assert free_again_within(d) < FREE_AGAIN_S
    d.wait_record("child-killed", process="worker")
  finally:
    box.close()


def test_monitor_killed_holding_the_dotlock_is_stale_for_the_next_session(
    start_daemon, accounts):
  """A monitor killed while it holds the dotlock leaves it behind, naming
  a dead process: the next session breaks it at once, and a delivery
  waiting for it then goes ahead.  (procmail alone would wait out its
  LOCKTIMEOUT, 1024 s by default, before breaking the lock itself.)"""
  box = Box("mbox")
  try:
    msgs = box.fill(6)
    big_id, big = box.corpus.make("filler", size=2_000_000)
    box.add(big_id, big)
    d = start_daemon({"mailbox": {"format": "mbox"}})
    lock = integrity.SPOOL / (harness.MAIL_USER + ".lock")
    c = integrity.RawPop3(d.port)
    assert c.login(harness.MAIL_USER, harness.MAIL_PASSWORD).startswith(
        b"+OK")
    _, monitor = session_pids(d)
    assert c.cmd("DELE 1").startswith(b"+OK")
    c.send("QUIT")
    deadline = time.monotonic() + 5
    while not lock.exists() and time.monotonic() < deadline:
      pass
    os.kill(monitor, signal.SIGKILL)
    assert lock.read_text().strip() == str(monitor)
    # The worker, its monitor gone, cannot finish the commit: it says so.
    status = c.drain_status(5.0)
    c.close()
    assert status is None or status.startswith(b"-ERR"), status
    integrity.wait_gone(integrity.user_workers(
        pwd.getpwnam(harness.MAIL_USER).pw_uid,
        d.sections["privsep"]["worker_path"]), FREE_AGAIN_S)
    assert lock.exists()

    delivery = box.mda.start()
    mid, m = box.corpus.make()
    delivery.stdin.write(m)
    delivery.stdin.close()
    time.sleep(0.3)  # procmail meets the lock and waits
    assert delivery.poll() is None
    took = free_again_within(d)
    assert took < 2.0, f"stale dotlock kept the session out {took:.3f} s"
    assert delivery.wait(timeout=FREE_AGAIN_S) == 0
    box.ledger.delivered(mid)
    problems, outcome = box.ledger.check(box.on_disk(), {msgs[0][0]},
                                         committed=False)
    assert not problems, problems
    leftovers = integrity.spool_leftovers(harness.MAIL_USER)
    assert not [n for n in leftovers if n.endswith(".lock")], leftovers
  finally:
    box.close()
