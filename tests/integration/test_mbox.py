"""mbox in the mail spool: STAT, RETR byte-exact, DELE at QUIT only."""

import pytest

import harness


@pytest.fixture
def mbox_daemon(start_daemon, mbox):
  return start_daemon({"mailbox": {"format": "mbox"}})


def test_stat_and_retr_match_the_messages(mbox_daemon):
  p = mbox_daemon.login()
  count, _ = p.stat()
  assert count == 3
  for n, body in enumerate(harness.message_bodies(), start=1):
    _, lines, _ = p.retr(n)
    assert b"\r\n".join(lines) + b"\r\n" == harness.wire(body)
  p.quit()


def test_dele_then_quit_rewrites_the_mbox(mbox_daemon, mbox):
  p = mbox_daemon.login()
  _, uidls, _ = p.uidl()
  p.dele(2)
  p.quit()
  bodies = harness.message_bodies()
  text = mbox.read_bytes()
  assert bodies[1] not in text
  assert bodies[0] in text and bodies[2] in text
  p = mbox_daemon.login()
  assert p.stat()[0] == 2
  _, after, _ = p.uidl()
  kept = {u.split()[1] for u in uidls} - {uidls[1].split()[1]}
  assert {u.split()[1] for u in after} == kept
  p.quit()


def test_drop_deletes_nothing(mbox_daemon, mbox):
  before = mbox.read_bytes()
  p = mbox_daemon.login()
  p.dele(1)
  p.close()
  mbox_daemon.wait_record("end", user=harness.MAIL_USER)
  assert mbox.read_bytes() == before
