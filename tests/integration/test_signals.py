"""SIGTERM lets open sessions finish; SIGHUP re-reads the configuration."""

import signal
import socket
import time

import harness


def refuses_connections(port, timeout=10.0):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    try:
      with socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    except OSError:
      return True
    time.sleep(0.05)
  return False


def greeting(daemon):
  p = daemon.pop3()
  text = p.getwelcome()
  p.quit()
  return text


def test_sigterm_lets_an_open_session_finish(daemon, maildir):
  p = daemon.pop3()
  p.user(harness.MAIL_USER)
  p.pass_(harness.MAIL_PASSWORD)
  daemon.signal(signal.SIGTERM)
  assert refuses_connections(daemon.port)
  # The session goes on to the end, and its deletions are made.
  assert p.stat()[0] == 3
  p.retr(2)
  p.dele(1)
  assert p.quit().startswith(b"+OK")
  assert daemon.proc.wait(timeout=15) == 0
  assert len(harness.maildir_files(maildir)) == 2
  daemon.wait_record("end", reason="quit", user=harness.MAIL_USER)


def test_sigterm_with_no_sessions_exits_at_once(daemon):
  start = time.monotonic()
  daemon.signal(signal.SIGTERM)
  assert daemon.proc.wait(timeout=10) == 0
  assert time.monotonic() - start < 5


def test_sighup_rereads_the_configuration(daemon):
  assert b"@" + harness.HOSTNAME.encode() + b">" in greeting(daemon)
  daemon.sections["server"]["hostname"] = "reloaded.example"
  daemon.write_config()
  daemon.signal(signal.SIGHUP)
  deadline = time.monotonic() + 10
  while b"@reloaded.example>" not in greeting(daemon):
    assert time.monotonic() < deadline, daemon.log()
    time.sleep(0.1)
  assert daemon.proc.poll() is None


def test_sighup_with_a_broken_file_keeps_the_old_settings(daemon):
  daemon.config_path.write_text("[server]\nno_such_key = 1\n")
  daemon.signal(signal.SIGHUP)
  time.sleep(1)
  assert daemon.proc.poll() is None
  assert b"@" + harness.HOSTNAME.encode() + b">" in greeting(daemon)
  assert str(daemon.config_path) in daemon.log()


def test_sighup_does_not_break_an_open_session(daemon):
  p = daemon.pop3()
  p.user(harness.MAIL_USER)
  p.pass_(harness.MAIL_PASSWORD)
  daemon.signal(signal.SIGHUP)
  time.sleep(0.5)
  assert p.stat()[0] == 3
  p.quit()
