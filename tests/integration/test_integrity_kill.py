"""No message is lost, duplicated or damaged when mail is delivered during
a session, or when the listener, a monitor or a worker is killed at any
point of a session, the UPDATE commit included.

For each format (a Maildir, and an mbox in /var/mail laid out as Debian
does it) procmail delivers into the mailbox from a background process,
and one more message is delivered inside each session between its DELEs
and its QUIT.  At each kill point a session logs in with USER/PASS,
marks messages deleted, and one process is sent SIGKILL (the worker is
found by its uid and executable among the daemon's processes, the
monitor is its parent):

  login         right after the +OK to PASS
  retr          half-way through the RETR of a large message
  dele          after the DELEs, before QUIT
  quit+N        N ms after QUIT was sent, N from 0 to 30
  dotlock       (mbox) as soon as the dotlock appears after QUIT
  temp          (mbox) as soon as the rewrite's temporary file appears
  renamed       (mbox) as soon as the new mailbox has replaced the old
  unlinked      (Maildir) as soon as the first deleted file is gone

Then: the processes left end; a new session logs in within RECOVERY_S
seconds of the kill (a dotlock left behind must be judged stale); the
mailbox on disk holds every kept and every delivered message exactly once
and byte for byte; the deleted ones are all gone or all there in an mbox
(a Maildir removes one file at a time, so there each is gone or whole,
and +OK to QUIT means all are gone); a session reads back through POP3
exactly what is on disk, with the UIDLs each message had before.  A
killed listener is started again.

POPGUARD_KILL_ROUNDS (default 1) repeats the whole set of points, with
the delays jittered, for soak runs: 1 round is 114 kill points.
"""

import os
import pwd
import random
import signal
import time

import pytest

import harness
import integrity

ROUNDS = int(os.environ.get("POPGUARD_KILL_ROUNDS", "1"))
QUIT_DELAYS_MS = (0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30)
TARGETS = ("worker", "monitor", "listener")
RECOVERY_S = 10.0
INITIAL_MESSAGES = 10
DOOMED_PER_SESSION = 3  # at least
# The longest a delivery may wait on the mailbox: procmail retries a
# taken dotlock every second (LOCKSLEEP in integrity.Procmail).
DELIVERY_LIMIT_S = RECOVERY_S + 5.0

FILLER_ID = f"filler@{integrity.DOMAIN}"
LARGE_ID = f"large@{integrity.DOMAIN}"


def kill_points(fmt, rounds):
  stages = ["login", "retr", "dele"]
  stages += [f"quit+{d}" for d in QUIT_DELAYS_MS]
  stages += (["dotlock", "temp", "renamed"] if fmt == "mbox"
             else ["unlinked"])
  rng = random.Random(11)
  points = []
  for r in range(rounds):
    for stage in stages:
      for target in TARGETS:
        jitter = rng.uniform(0, 1.0) if r > 0 else 0.0
        points.append((stage, target, jitter))
  return points


class Context:
  """One format's run: the daemon, the mailbox, the delivery loop."""

  def __init__(self, fmt, start_daemon, worker_path, tmp_path):
    self.fmt = fmt
    self.start_daemon = start_daemon
    self.worker_path = worker_path
    self.user = harness.MAIL_USER
    self.uid = pwd.getpwnam(self.user).pw_uid
    self.corpus = integrity.Corpus(seed=3 if fmt == "mbox" else 4)
    self.ledger = integrity.Ledger(self.corpus)
    self.layout = None
    self.maildir = harness.home_of(self.user) / "Maildir"
    self.uidls = {}  # Message-ID -> UIDL, as first seen
    self.results = []
    self.summary_path = tmp_path / f"kill-{fmt}.txt"
    self.daemon = None

  # -- the mailbox

  def fill(self):
    # The filler makes an mbox commit (scan, copy, fsync) last long
    # enough that kills a few milliseconds apart land inside it.
    messages = [self.corpus.make(FILLER_ID.split("@")[0], size=4_000_000),
                self.corpus.make(LARGE_ID.split("@")[0], size=300_000)]
    messages += [self.corpus.make() for _ in range(INITIAL_MESSAGES)]
    if self.fmt == "mbox":
      self.layout = integrity.SpoolLayout(self.user)
      self.layout.write(b"".join(integrity.mbox_entry(m)
                                 for _, m in messages))
      destination = str(self.layout.path)
    else:
      harness.fill_maildir(self.user, [
          ("cur" if i % 2 else "new",
           f"17000{i:05d}.M{i}P{i}.{harness.HOSTNAME}" +
           (":2,S" if i % 2 else ""), m)
          for i, (_, m) in enumerate(messages)])
      destination = str(self.maildir) + "/"
    self.ledger.present = {mid for mid, _ in messages}
    self.mda = integrity.Procmail(self.user, destination)

  def on_disk(self):
    if self.fmt == "mbox":
      data = self.layout.path.read_bytes() if self.layout.path.exists() \
          else b""
      messages, problems = integrity.parse_mbox(data)
      return messages, problems
    return list(integrity.maildir_messages(self.maildir).values()), []

  def start(self):
    self.daemon = self.start_daemon({"mailbox": {"format": self.fmt}})

  def close(self):
    if getattr(self, "mda", None):
      self.mda.close()
    if self.layout:
      self.layout.close()


def _pipelined_ids(c, count):
  """{number: Message-ID} through TOP n 0, sent in one go."""
  c.sock.sendall(b"".join(b"TOP %d 0\r\n" % n
                          for n in range(1, count + 1)))
  ids = {}
  for n in range(1, count + 1):
    status = c.line()
    assert status.startswith(b"+OK"), status
    head = b"".join(l + b"\n" for l in c.multiline())
    ids[n] = integrity.message_id(head + b"\n")
  return ids


def _served(p, whole):
  """{Message-ID: message} of a session, in message order.  Unless
  `whole`, a message over 1 MB is not retrieved: it stands in as
  (size from LIST, header from TOP)."""
  _, lines, _ = p.list()
  sizes = dict(tuple(int(x) for x in line.split()) for line in lines)
  out = {}
  for n in sorted(sizes):
    if whole or sizes[n] < 1_000_000:
      _, lines, _ = p.retr(n)
      m = b"".join(l + b"\n" for l in lines)
    else:
      _, lines, _ = p.top(n, 0)
      m = (sizes[n], b"".join(l + b"\n" for l in lines).rstrip(b"\n") +
           b"\n\n")
    mid = integrity.message_id(m[1] if isinstance(m, tuple) else m)
    out[mid if mid not in out else f"{mid}#{n}"] = m
  return out


def _check_stand_in(served, stored):
  """Problems of a message served as `served` (see _served)."""
  if not isinstance(served, tuple):
    return [] if served == stored else ["filler damaged"]
  size, head = served
  # RFC 1939 leaves open whether stuffing dots count: up to one a line.
  exact = len(stored) + stored.count(b"\n")
  stuffed = sum(1 for l in stored.split(b"\n") if l.startswith(b"."))
  problems = []
  if not exact <= size <= exact + stuffed:
    problems.append(f"filler listed as {size} octets, stored {exact}")
  if not stored.startswith(head):
    problems.append("filler's header differs")
  return problems


def _wait_for(cond, timeout=2.0):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if cond():
      return True
  return False


def _trigger(ctx, stage, doomed_paths):
  """A predicate that turns true when the commit reaches `stage`."""
  if stage == "dotlock":
    lock = integrity.SPOOL / (ctx.user + ".lock")
    return lambda: lock.exists()
  if stage == "temp":
    prefix = ctx.user + ".popguard."
    return lambda: any(p.name.startswith(prefix)
                       for p in integrity.SPOOL.iterdir())
  if stage == "renamed":
    ino = ctx.layout.path.stat().st_ino

    def renamed():
      try:
        return ctx.layout.path.stat().st_ino != ino
      except FileNotFoundError:
        return False
    return renamed
  if stage == "unlinked":
    return lambda: any(not p.exists() for p in doomed_paths)
  raise ValueError(stage)


def _doomed_paths(ctx, doomed_ids):
  """The Maildir files of the messages about to be deleted."""
  out = []
  for path, data in integrity.maildir_messages(ctx.maildir).items():
    if integrity.message_id(data) in doomed_ids:
      out.append(path)
  return out


def run_point(ctx, stage, target, jitter):
  rng = random.Random(f"{stage}/{target}/{jitter}")
  daemon = ctx.daemon
  t_start = time.monotonic()
  c = integrity.RawPop3(daemon.port)
  r = c.login(ctx.user, harness.MAIL_PASSWORD)
  assert r.startswith(b"+OK"), (stage, target, r)
  worker, monitor = integrity.find_session(daemon.pid, ctx.uid,
                                           ctx.worker_path)
  victim = {"worker": worker, "monitor": monitor,
            "listener": daemon.pid}[target]
  quit_sent = False
  doomed = set()
  fired = None
  if stage != "login":
    count = int(c.cmd("STAT").split()[1])
    ids = _pipelined_ids(c, count)
    by_id = {mid: n for n, mid in ids.items()}
    if stage == "retr":
      c.send(f"RETR {by_id[LARGE_ID]}")
      assert c.read_some(64 * 1024).startswith(b"+OK")
    else:
      choices = sorted(mid for mid in by_id if mid not in (FILLER_ID,
                                                            LARGE_ID))
      # A third of the mailbox, at least a few: deliveries keep coming,
      # and a longer commit is a wider target.
      doomed = set(rng.sample(choices, min(len(choices), max(
          DOOMED_PER_SESSION, len(choices) // 3))))
      for mid in sorted(doomed):
        assert c.cmd(f"DELE {by_id[mid]}").startswith(b"+OK")
      if stage != "dele":
        # Mail that arrives after the session's snapshot: the commit must
        # keep it.
        ctx.loop.deliver_one()
        paths = _doomed_paths(ctx, doomed) if ctx.fmt == "maildir" else []
        cond = None
        if not stage.startswith("quit+"):
          cond = _trigger(ctx, stage, paths)
        c.send("QUIT")
        quit_sent = True
        if cond is not None:
          fired = _wait_for(cond)
        else:
          delay = int(stage.split("+")[1]) + jitter
          end = time.perf_counter() + delay / 1000.0
          while time.perf_counter() < end:
            pass
  killed_at = time.monotonic()
  try:
    os.kill(victim, signal.SIGKILL)
    hit = True
  except ProcessLookupError:
    hit = False  # it had ended (a Maildir commit takes microseconds)

  committed = None
  if target == "listener" and not quit_sent:
    # A killed listener leaves the session running: it ends as usual.
    if stage == "retr":
      assert c.line().startswith(b"+OK")
      body = b"".join(l + b"\n" for l in c.multiline())
      assert body == ctx.corpus.by_id[LARGE_ID], "RETR cut short"
    c.send("QUIT")
    quit_sent = True
  if quit_sent:
    status = c.drain_status(10.0 if target == "listener" else 3.0)
    if status is not None:
      committed = status.startswith(b"+OK")
  c.close()
  integrity.wait_gone([worker, monitor] if target != "monitor"
                      else [monitor], 5.0)
  integrity.wait_gone(integrity.user_workers(ctx.uid, ctx.worker_path),
                      RECOVERY_S)
  if target == "listener":
    daemon.proc.wait(timeout=5)
    ctx.start()
    daemon = ctx.daemon

  t_gone = time.monotonic()
  # The next session, as soon as it can have one.
  p, _, tries = integrity.login_until(daemon, RECOVERY_S)
  p.stat()
  integrity.uidl_map(p)
  p.quit()
  recovery = time.monotonic() - killed_at
  assert recovery < RECOVERY_S, (stage, target, recovery)

  t_pause = time.monotonic()
  ctx.loop.pause()
  t_paused = time.monotonic()
  try:
    found, structure = ctx.on_disk()
    problems, outcome = ctx.ledger.check(
        found, doomed, all_or_nothing=ctx.fmt == "mbox",
        committed=committed)
    problems = structure + problems
    if target == "listener" and quit_sent and committed is not True:
      problems.append("listener killed, yet QUIT was not answered +OK")
    leftovers = (integrity.spool_leftovers(ctx.user)
                 if ctx.fmt == "mbox" else [])
    dotlocks = [n for n in leftovers if n.endswith(".lock")]
    temps = [n for n in leftovers if ".popguard." in n]
    if dotlocks:
      problems.append(f"dotlock still there after a session: {dotlocks}")
    if temps and target != "monitor":
      problems.append(f"temporary files left: {temps}")
    for name in temps:
      (integrity.SPOOL / name).unlink()
    # What POP3 serves is what is on disk, under the same UIDLs as before.
    # The filler is read back whole at every fifth point only, to keep
    # the run short; the others check its size and header.
    p = integrity.apop_login(daemon)
    served = _served(p, whole=len(ctx.results) % 5 == 0)
    served_ids = list(served)
    uidls = integrity.uidl_map(p)
    p.quit()
    filler = ctx.corpus.by_id[FILLER_ID]
    if FILLER_ID in served:
      found = [m for m in found if m != filler]
      problems += _check_stand_in(served.pop(FILLER_ID), filler)
    served = list(served.values())
    if sorted(served) != sorted(found):
      problems.append(f"POP3 serves {len(served)} messages, the mailbox "
                      f"holds {len(found)}, or their bytes differ")
    for n, mid in enumerate(served_ids, start=1):
      before = ctx.uidls.setdefault(mid, uidls[n])
      if before != uidls[n]:
        problems.append(f"UIDL of {mid} changed: {before} -> {uidls[n]}")
    if len(set(uidls.values())) != len(uidls):
      problems.append("UIDLs not unique")
  finally:
    ctx.loop.resume()

  t_end = time.monotonic()
  timing = {"session": killed_at - t_start, "settle": t_gone - killed_at,
            "pause": t_paused - t_pause, "check": t_end - t_paused}
  result = {"stage": stage, "target": target, "jitter": round(jitter, 3),
            "hit": hit,
            "doomed": len(doomed), "outcome": outcome,
            "quit": {None: "-", True: "+OK", False: "-ERR"}[committed],
            "fired": fired, "recovery_s": round(recovery, 3),
            "tries": tries, "temps": len(temps), "messages": len(found),
            "timing": {k: round(v, 3) for k, v in timing.items()},
            "problems": problems}
  ctx.results.append(result)
  return result


def _summary(ctx, elapsed):
  lines = [f"{ctx.fmt}: {len(ctx.results)} kill points in {elapsed:.1f} s; "
           f"deliveries {ctx.loop.stats()}"]
  outcomes = {}
  for r in ctx.results:
    key = (r["target"], r["outcome"])
    outcomes[key] = outcomes.get(key, 0) + 1
  lines.append(f"  outcomes (target, deleted): {sorted(outcomes.items())}")
  lines.append(f"  slowest recovery: "
               f"{max(r['recovery_s'] for r in ctx.results):.3f} s; "
               f"temporary files left by killed monitors: "
               f"{sum(r['temps'] for r in ctx.results)}")
  for r in ctx.results:
    lines.append("  " + " ".join(f"{k}={v}" for k, v in r.items()
                                 if k != "problems") +
                 (f" PROBLEMS={r['problems']}" if r["problems"] else ""))
  return "\n".join(lines)


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
def test_kills_lose_duplicate_or_damage_nothing(fmt, start_daemon,
                                                shared_worker, tmp_path):
  ctx = Context(fmt, start_daemon, shared_worker, tmp_path)
  t0 = time.monotonic()
  try:
    ctx.fill()
    ctx.start()
    # procmail appending to an mbox that a session has read since its
    # last write sleeps a second under the locks (so that the mtime moves
    # past the atime, for "new mail" checks), and popguard's login waits
    # for it: fewer background deliveries keep the run short.
    interval = (0.3, 1.0) if fmt == "mbox" else (0.05, 0.35)
    ctx.loop = integrity.DeliveryLoop(ctx.mda, ctx.corpus, ctx.ledger,
                                      interval)
    ctx.loop.start()
    try:
      for stage, target, jitter in kill_points(fmt, ROUNDS):
        run_point(ctx, stage, target, jitter)
    finally:
      ctx.loop.stop()
      ctx.summary_path.write_text(_summary(ctx, time.monotonic() - t0))
      print(ctx.summary_path.read_text())
    # Whatever the deliveries still in flight at the last point did is in
    # by now.
    found, structure = ctx.on_disk()
    problems, _ = ctx.ledger.check(found)
    assert not structure + problems, structure + problems
  finally:
    ctx.close()
  bad = [r for r in ctx.results if r["problems"]]
  assert not bad, "\n".join(
      f"{r['stage']} {r['target']}: {r['problems']}" for r in bad)
  assert not ctx.loop.failures, ctx.loop.failures
  assert max(ctx.loop.times) < DELIVERY_LIMIT_S, ctx.loop.stats()
  assert len(ctx.results) >= 50
