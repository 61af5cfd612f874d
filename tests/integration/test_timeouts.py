"""Login and idle timeouts end the session; nothing is deleted."""

import socket
import time

import harness


def test_login_timeout_ends_a_silent_client(start_daemon):
  daemon = start_daemon({"session": {"login_timeout": 1}})
  with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as s:
    assert s.recv(512).startswith(b"+OK")
    start = time.monotonic()
    rest = b""
    try:
      while chunk := s.recv(512):  # until the server closes
        rest += chunk
    except ConnectionResetError:
      pass
    assert time.monotonic() - start < 8
  rec = daemon.wait_record("end", user="")[-1]
  assert rec["reason"] in ("timeout", "login-timeout")


def test_idle_timeout_ends_the_session_without_deleting(start_daemon,
                                                         maildir):
  daemon = start_daemon({"session": {"idle_timeout": 1}})
  p = daemon.pop3()
  p.user(harness.MAIL_USER)
  p.pass_(harness.MAIL_PASSWORD)
  p.dele(1)
  rec = daemon.wait_record("end", user=harness.MAIL_USER, timeout=15)[0]
  assert rec["reason"] == "timeout"
  assert rec["deleted"] == "0"
  assert harness.maildir_files(maildir) == harness.message_bodies()


def test_too_many_bad_commands_end_the_session(start_daemon):
  daemon = start_daemon({"session": {"max_bad_commands": 3}})
  with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as s:
    f = s.makefile("rwb")
    assert f.readline().startswith(b"+OK")
    answers = []
    for _ in range(5):
      try:
        f.write(b"XYZZY\r\n")
        f.flush()
        line = f.readline()
      except OSError:
        break
      if not line:
        break
      answers.append(line)
    assert 1 <= len(answers) <= 4
    assert all(a.startswith(b"-ERR") for a in answers)
  daemon.wait_record("end", count=2, user="")
