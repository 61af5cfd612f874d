"""A dropped connection deletes nothing; QUIT after DELE deletes."""

import socket

import harness


def test_drop_after_dele_deletes_nothing(daemon, maildir):
  p = daemon.pop3()
  p.user(harness.MAIL_USER)
  p.pass_(harness.MAIL_PASSWORD)
  p.dele(1)
  p.dele(2)
  p.retr(3)
  # Gone without QUIT, as a client does when its link dies.
  p.sock.shutdown(socket.SHUT_RDWR)
  p.close()
  rec = daemon.wait_record("end", user=harness.MAIL_USER)[0]
  assert rec["reason"] == "disconnect"
  assert rec["deleted"] == "0"
  assert harness.maildir_files(maildir) == harness.message_bodies()


def test_quit_after_dele_deletes(daemon, maildir):
  p = daemon.pop3()
  p.user(harness.MAIL_USER)
  p.pass_(harness.MAIL_PASSWORD)
  p.dele(1)
  p.dele(3)
  assert p.quit().startswith(b"+OK")
  rec = daemon.wait_record("end", user=harness.MAIL_USER)[0]
  assert rec["reason"] == "quit"
  assert rec["deleted"] == "2"
  assert harness.maildir_files(maildir) == [harness.message_bodies()[1]]


def test_drop_after_rset_and_dele_then_new_session_sees_all(daemon, maildir):
  p = daemon.pop3()
  p.user(harness.MAIL_USER)
  p.pass_(harness.MAIL_PASSWORD)
  p.dele(2)
  p.close()
  daemon.wait_record("end", user=harness.MAIL_USER)
  p = daemon.pop3()
  p.user(harness.MAIL_USER)
  p.pass_(harness.MAIL_PASSWORD)
  assert p.stat()[0] == 3
  p.quit()


def test_drop_before_login_ends_the_session(daemon):
  with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as s:
    assert s.recv(512).startswith(b"+OK")
    s.sendall(b"USER " + harness.MAIL_USER.encode() + b"\r\n")
    assert s.recv(512).startswith(b"+OK")
  daemon.wait_record("end", reason="disconnect")
