"""RFC 2449 EXPIRE is held to at QUIT, in both mailbox formats.

The test messages were delivered in 2023: harness.fill_maildir dates the
files so, and harness.mbox_text writes From_ lines that say so.  A
message dated now stands for fresh mail.
"""

import os
import time

import harness

BODIES = harness.message_bodies()


def file_of(maildir, n):
  sub, name, _ = harness.MESSAGES[n - 1]
  return maildir / sub / name


def test_expire_zero_removes_what_was_retrieved_at_quit(start_daemon,
                                                        maildir):
  daemon = start_daemon({"session": {"expire": 0}})
  p = daemon.login()
  assert p.capa()["EXPIRE"] == ["0"]
  p.retr(2)
  p.top(3, 0)  # a look at the header is not a retrieval
  p.quit()
  assert harness.maildir_files(maildir) == [BODIES[0], BODIES[2]]
  end = daemon.wait_record("end", user=harness.MAIL_USER)[0]
  assert end["deleted"] == "1" and end["retrieved"] == "1"


def test_expire_zero_removes_nothing_without_quit(start_daemon, maildir):
  daemon = start_daemon({"session": {"expire": 0}})
  p = daemon.login()
  p.retr(1)
  p.close()
  daemon.wait_record("end", user=harness.MAIL_USER, reason="disconnect")
  assert harness.maildir_files(maildir) == BODIES


def test_expire_in_days_removes_old_mail_and_keeps_fresh_mail(start_daemon,
                                                              maildir):
  now = time.time()
  os.utime(file_of(maildir, 2), (now, now))
  daemon = start_daemon({"session": {"expire": 30}})
  p = daemon.login()
  assert p.capa()["EXPIRE"] == ["30"]
  p.uidl()  # a leave-on-server client that finds nothing new
  assert p.quit().startswith(b"+OK popguard signing off (1 message left)")
  assert harness.maildir_files(maildir) == [BODIES[1]]
  end = daemon.wait_record("end", user=harness.MAIL_USER)[0]
  assert end["deleted"] == "2" and end["retrieved"] == "0"


def test_expire_never_and_unset_remove_nothing(start_daemon, maildir):
  for overrides in ({"session": {"expire": "never"}}, {}):
    daemon = start_daemon(overrides)
    p = daemon.login()
    p.retr(1)
    p.quit()
    daemon.stop()
    assert harness.maildir_files(maildir) == BODIES


def test_mbox_expire_reads_the_from_line_date(start_daemon, mbox):
  fresh = time.strftime("%a %b %e %H:%M:%S %Y", time.gmtime()).encode()
  kept = b"From: Dan <dan@example.org>\nSubject: fresh\n\nnew mail\n"
  with open(mbox, "ab") as f:
    f.write(b"From sender@example.org " + fresh + b"\n" + kept)
  daemon = start_daemon({"mailbox": {"format": "mbox"},
                         "session": {"expire": 30}})
  p = daemon.login()
  assert p.stat()[0] == 4
  # Delivered during the session: not part of it, so not expired either.
  late = b"S: late\n\nold date, new delivery\n"
  with open(mbox, "ab") as f:
    f.write(b"\nFrom late@example.org Mon Jan  2 00:00:00 2006\n" + late)
  p.quit()
  end = daemon.wait_record("end", user=harness.MAIL_USER)[0]
  assert end["deleted"] == "3"

  text = mbox.read_bytes()
  assert b"2023" not in text and text.count(b"From ") == 2
  p = daemon.login()
  assert p.stat()[0] == 2
  assert b"\r\n".join(p.retr(1)[1]) + b"\r\n" == harness.wire(kept)
  assert b"\r\n".join(p.retr(2)[1]) + b"\r\n" == harness.wire(late)
  p.quit()
