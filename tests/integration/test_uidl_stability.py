"""UIDLs are unique, valid (1 to 70 octets of 0x21..0x7E, RFC 1939
section 7) and stay the same across sessions, across the deletion of
other messages, across another client's flag changes (a mail reader
renaming a Maildir file to ":2,S", or adding Status: headers to an mbox)
and across rewrites of an mbox, popguard's own and another program's.
Qpopper's X-UIDL headers are the UIDLs of an mbox; a Maildir's UIDL is
the unique part of the file name.
"""

import fcntl
import os

import pytest

import harness
import integrity

FORMATS = ["maildir", "mbox"]


class MaildirStore:
  fmt = "maildir"

  def __init__(self, corpus):
    self.corpus = corpus
    self.path = harness.home_of(harness.MAIL_USER) / "Maildir"

  def fill(self, messages, names=None):
    entries = []
    for i, (_, m) in enumerate(messages):
      name = (names[i] if names else
              f"{1700000100 + i}.M{i}P{4000 + i}.{harness.HOSTNAME}")
      # Half read already (cur/, with flags), half new.
      if ":2," in name or "!2," in name:
        entries.append(("cur", name, m))
      elif i % 2:
        entries.append(("cur", name + ":2,", m))
      else:
        entries.append(("new", name, m))
    harness.fill_maildir(harness.MAIL_USER, entries)

  def other_client_marks_all_seen(self):
    """What mutt does on reading: new/NAME -> cur/NAME:2,S; flags added."""
    for sub in ("new", "cur"):
      for p in sorted((self.path / sub).iterdir()):
        base = integrity_unique(p.name)
        flags = p.name[len(base) + 3:] if len(p.name) > len(base) else ""
        if "S" not in flags:
          flags = "".join(sorted(flags + "S"))
        os.rename(p, self.path / "cur" / f"{base}:2,{flags}")

  def close(self):
    pass


def integrity_unique(name):
  """The unique part of a Maildir file name (before ':2,' or '!2,')."""
  cut = len(name)
  for sep in (":", "!2,"):
    i = name.find(sep)
    if i >= 0:
      cut = min(cut, i)
  return name[:cut]


class MboxStore:
  fmt = "mbox"

  def __init__(self, corpus):
    self.corpus = corpus
    self.layout = integrity.SpoolLayout(harness.MAIL_USER)
    self.path = self.layout.path

  def fill(self, messages, names=None):
    self.layout.write(b"".join(integrity.mbox_entry(m)
                               for _, m in messages))

  def _locked_rewrite(self, change):
    """Rewrites the mbox in place under the dotlock and an fcntl lock, as
    mutt does when it saves flags or expunges."""
    lock = self.path.with_name(self.path.name + ".lock")
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, f"{os.getpid()}\n".encode())
    os.close(fd)
    try:
      with open(self.path, "r+b") as f:
        fcntl.lockf(f, fcntl.LOCK_EX)
        data = change(f.read())
        f.seek(0)
        f.write(data)
        f.truncate()
        f.flush()
        os.fsync(f.fileno())
        fcntl.lockf(f, fcntl.LOCK_UN)
    finally:
      lock.unlink()

  def other_client_marks_all_seen(self):
    """Status: RO and X-Status: A added to every message's header."""
    def change(data):
      parts = data.split(b"\n\nFrom ")
      out = []
      for part in parts:
        head, sep, rest = part.partition(b"\n\n")
        out.append(head + b"\nStatus: RO\nX-Status: A" + sep + rest)
      return b"\n\nFrom ".join(out)
    self._locked_rewrite(change)

  def other_program_expunges(self, mid):
    """Removes one message in place, moving every later one."""
    def change(data):
      messages, problems = integrity.parse_mbox(data)
      assert not problems
      froms = [l for l in data.split(b"\n") if l.startswith(b"From ")]
      keep = [(f, m) for f, m in zip(froms, messages)
              if integrity.message_id(m) != mid]
      return b"".join(f + b"\n" + b"\n".join(
          integrity.quote_mboxrd(l) for l in m.split(b"\n")[:-1]) + b"\n\n"
                      for f, m in keep)
    self._locked_rewrite(change)

  def close(self):
    self.layout.close()


@pytest.fixture(params=FORMATS)
def store(request, accounts):
  corpus = integrity.Corpus(seed=21)
  s = (MboxStore if request.param == "mbox" else MaildirStore)(corpus)
  yield s
  s.close()


@pytest.fixture
def uidl_daemon(start_daemon, store):
  def start():
    return start_daemon({"mailbox": {"format": store.fmt}})
  return start


def snapshot(daemon):
  """[(uidl, Message-ID)] in message order, from one session."""
  p = integrity.apop_login(daemon)
  try:
    uidls = integrity.uidl_map(p)
    out = []
    for n in sorted(uidls):
      _, lines, _ = p.top(n, 0)
      head = b"".join(l + b"\n" for l in lines)
      out.append((uidls[n], integrity.message_id(head + b"\n")))
    return out
  finally:
    p.quit()


def check_valid_and_unique(pairs):
  uidls = [u for u, _ in pairs]
  for u in uidls:
    assert integrity.valid_uidl(u), u
  assert len(set(uidls)) == len(uidls), uidls


def messages(corpus, n, **kw):
  return [corpus.make(**kw) for _ in range(n)]


def test_uidls_are_valid_unique_and_the_same_in_every_session(
    store, uidl_daemon):
  store.fill(messages(store.corpus, 8))
  d = uidl_daemon()
  first = snapshot(d)
  assert len(first) == 8
  check_valid_and_unique(first)
  for _ in range(3):
    assert snapshot(d) == first
  # The same mailbox under a daemon started afresh.
  d.stop()
  assert snapshot(uidl_daemon()) == first


def test_deleting_other_messages_keeps_the_rest_of_the_uidls(
    store, uidl_daemon):
  store.fill(messages(store.corpus, 9))
  d = uidl_daemon()
  before = dict(snapshot(d))
  mda = integrity.Procmail(harness.MAIL_USER,
                           str(store.path) + ("/" if store.fmt == "maildir"
                                              else ""))
  try:
    for doomed_numbers in ((2, 5), (1,), (3, 4)):
      p = integrity.apop_login(d)
      uidls = integrity.uidl_map(p)
      gone = {uidls[n] for n in doomed_numbers}
      for n in doomed_numbers:
        p.dele(n)
      assert p.quit().startswith(b"+OK")
      # New mail between sessions: its UIDL is new, the others stay.
      mid, msg = store.corpus.make()
      assert mda.deliver(msg)[0] == 0
      after = dict(snapshot(d))
      for u in gone:
        before.pop(u)
      new = {u: m for u, m in after.items() if u not in before}
      assert list(new.values()) == [mid]
      assert {u: m for u, m in after.items() if u in before} == before
      check_valid_and_unique(list(after.items()))
      before = after
  finally:
    mda.close()


def test_another_clients_flag_change_keeps_the_uidls(store, uidl_daemon):
  store.fill(messages(store.corpus, 6))
  d = uidl_daemon()
  before = snapshot(d)
  store.other_client_marks_all_seen()
  assert snapshot(d) == before


def test_flag_change_during_a_session_keeps_uidl_and_retr(store,
                                                          uidl_daemon):
  """A Maildir message renamed by another client while a session is open
  is still found, under the same UIDL."""
  if store.fmt != "maildir":
    pytest.skip("an mbox changed in place during a session refuses the "
                "commit instead (test_mbox)")
  msgs = messages(store.corpus, 4)
  store.fill(msgs)
  d = uidl_daemon()
  p = integrity.apop_login(d)
  try:
    before = integrity.uidl_map(p)
    store.other_client_marks_all_seen()
    assert integrity.uidl_map(p) == before
    for n, (_, m) in enumerate(msgs, start=1):
      _, lines, _ = p.retr(n)
      assert b"".join(l + b"\n" for l in lines) == m
  finally:
    p.quit()


def test_mbox_rewritten_by_another_program_keeps_the_uidls(store,
                                                           uidl_daemon):
  if store.fmt != "mbox":
    pytest.skip("mbox only")
  msgs = messages(store.corpus, 7)
  store.fill(msgs)
  d = uidl_daemon()
  before = snapshot(d)
  store.other_program_expunges(msgs[1][0])
  store.other_client_marks_all_seen()
  after = snapshot(d)
  assert after == [pair for pair in before if pair[1] != msgs[1][0]]


def test_identical_messages_get_distinct_stable_uidls(store, uidl_daemon):
  mid, m = store.corpus.make()
  other = messages(store.corpus, 2)
  # The same message three times, as a broken delivery or a copy leaves it.
  store.fill([other[0], (mid, m), (mid, m), other[1], (mid, m)])
  d = uidl_daemon()
  first = snapshot(d)
  check_valid_and_unique(first)
  assert [x for _, x in first].count(mid) == 3
  assert snapshot(d) == first
  # Deleting the first copy must not hand its UIDL to another one.
  p = integrity.apop_login(d)
  p.dele(2)
  assert p.quit().startswith(b"+OK")
  after = snapshot(d)
  check_valid_and_unique(after)
  if store.fmt == "maildir":
    # Each copy is its own file, named apart: all keep their UIDLs.
    assert after == [x for i, x in enumerate(first) if i != 1]
  else:
    # Copies that nothing tells apart are numbered in file order (mbox.h),
    # so the remaining copies may take over the numbers; no UIDL is new,
    # so a client fetches nothing again.
    assert {u for u, _ in after} <= {u for u, _ in first}
    assert [x for _, x in after].count(mid) == 2


def test_qpopper_x_uidl_headers_are_the_uidls(store, uidl_daemon):
  if store.fmt != "mbox":
    pytest.skip("X-UIDL is an mbox header (Qpopper's); a Maildir's UIDL "
                "is its file name")
  c = store.corpus
  qpopper = "d5b1ee6a9c5e7d0c8e1f1c5a0b7d3e21"
  msgs = [
      c.make(extra_headers=f"X-UIDL: {qpopper}\n".encode()),
      c.make(extra_headers=b"X-UIDL:    !~spaces-around~!   \n"),
      # Not valid: a space inside, or over 70 octets.  The content
      # digest is used instead.
      c.make(extra_headers=b"X-UIDL: has a space\n"),
      c.make(extra_headers=b"X-UIDL: " + b"7" * 71 + b"\n"),
      # A copied header: the first in file order keeps it.
      c.make(extra_headers=f"X-UIDL: {qpopper}\n".encode()),
      c.make(),
  ]
  store.fill(msgs)
  d = uidl_daemon()
  got = snapshot(d)
  check_valid_and_unique(got)
  uidls = [u for u, _ in got]
  assert uidls[0] == qpopper
  assert uidls[1] == "!~spaces-around~!"
  assert uidls[2] != "has" and " " not in uidls[2]
  assert uidls[3] != "7" * 71 and len(uidls[3]) <= 70
  assert uidls[4] != qpopper
  # Kept through a rewrite by popguard and a flag change by a reader.
  p = integrity.apop_login(d)
  p.dele(6)
  assert p.quit().startswith(b"+OK")
  store.other_client_marks_all_seen()
  assert snapshot(d) == got[:5]


def test_maildir_uidl_is_the_unique_part_of_the_file_name(store,
                                                          uidl_daemon):
  if store.fmt != "maildir":
    pytest.skip("Maildir only")
  long_name = "1700000200." + "L" * 80 + ".host"
  names = ["1700000101.M1P1.pgtest.example",
           "1700000102.M2P2.pgtest.example:2,S",
           "1700000103.M3P3.pgtest.example!2,RS",
           long_name,
           "1700000105.V801I4M5.pgtest.example,S=1234"]
  msgs = messages(store.corpus, len(names))
  store.fill(msgs, names=names)
  d = uidl_daemon()
  got = snapshot(d)
  check_valid_and_unique(got)
  by_mid = {mid: u for u, mid in got}
  assert by_mid[msgs[0][0]] == "1700000101.M1P1.pgtest.example"
  assert by_mid[msgs[1][0]] == "1700000102.M2P2.pgtest.example"
  assert by_mid[msgs[2][0]] == "1700000103.M3P3.pgtest.example"
  # Over 70 octets: not a valid UIDL, so a digest of it, still stable.
  assert len(by_mid[msgs[3][0]]) <= 70
  assert by_mid[msgs[4][0]] == "1700000105.V801I4M5.pgtest.example,S=1234"
  store.other_client_marks_all_seen()
  assert snapshot(d) == got
