"""TLS with clients other than Python's: openssl s_client and fetchmail.

s_client drives a login through its stdin on both ports; fetchmail
downloads over POP3S; a client that offers nothing newer than TLS 1.1
meets the TLS 1.2 floor and is refused, and the refusal is logged.
"""

import shutil
import subprocess

import pytest

import harness

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None,
                                   reason="no openssl")


def s_client(port, *extra, stdin=""):
  """openssl s_client against 127.0.0.1:port; -quiet shows only what the
  server sends once TLS is up, and keeps going after stdin ends."""
  return subprocess.run(
      ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-quiet",
       "-servername", harness.HOSTNAME, *extra],
      input=stdin.encode(), capture_output=True, timeout=60)


def login_script():
  return (f"USER {harness.MAIL_USER}\r\n"
          f"PASS {harness.MAIL_PASSWORD}\r\n"
          "STAT\r\n"
          "QUIT\r\n")


def answers(stdout):
  return [l for l in stdout.decode(errors="replace").split("\r\n") if l]


@needs_openssl
def test_s_client_starttls_logs_in_and_stats(tls_daemon):
  done = s_client(tls_daemon.port, "-starttls", "pop3", stdin=login_script())
  lines = answers(done.stdout)
  # s_client reads the greeting and sends STLS itself: what is left are
  # the answers to the four commands, in order.
  assert len(lines) == 4, done
  assert lines[0].startswith("+OK")
  assert lines[1].startswith("+OK")
  assert lines[2].startswith("+OK 3 ")
  assert lines[3].startswith("+OK")
  rec = tls_daemon.wait_record("auth", user=harness.MAIL_USER)[0]
  assert rec["result"] == "ok" and rec["tls"] == "yes"
  assert rec["tls_protocol"] in ("TLSv1.2", "TLSv1.3")


@needs_openssl
def test_s_client_on_the_pop3s_port_logs_in_and_stats(tls_daemon):
  done = s_client(tls_daemon.tls_port, stdin=login_script())
  lines = answers(done.stdout)
  assert len(lines) == 5, done
  assert lines[0].startswith("+OK")  # the greeting, after the handshake
  assert lines[3].startswith("+OK 3 ")
  assert all(l.startswith("+OK") for l in lines)
  tls = tls_daemon.wait_record("tls", result="ok")
  assert tls


@pytest.mark.skipif(shutil.which("fetchmail") is None, reason="no fetchmail")
def test_fetchmail_over_pop3s_downloads_all(tls_daemon, maildir, tmp_path):
  got = harness.run_fetchmail(
      tls_daemon.tls_port, tmp_path, rc_ssl="",
      args=["--ssl", "--sslproto", "tls1.2+", "--nosslcertck"])
  assert len(got) == 3
  assert harness.maildir_files(maildir) == []
  rec = tls_daemon.wait_record("auth", user=harness.MAIL_USER)[0]
  assert rec["tls"] == "yes" and rec["result"] == "ok"


# TLS 1.1 needs SHA-1 in its handshake, which OpenSSL 3 refuses above
# security level 0: without lowering it the client would give up before
# sending anything and the server's floor would go untested.
OLD_CLIENT = ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]


@needs_openssl
def test_tls_1_1_client_is_refused_on_the_pop3s_port(tls_daemon):
  done = s_client(tls_daemon.tls_port, *OLD_CLIENT, stdin="CAPA\r\n")
  assert done.returncode != 0
  assert b"+OK" not in done.stdout
  rec = tls_daemon.wait_record("tls", result="fail")[0]
  assert "unsupported protocol" in rec["error"], rec


@needs_openssl
def test_tls_1_1_client_is_refused_after_stls(tls_daemon):
  done = s_client(tls_daemon.port, "-starttls", "pop3", *OLD_CLIENT,
                  stdin="CAPA\r\n")
  assert done.returncode != 0
  assert b"+OK" not in done.stdout
  rec = tls_daemon.wait_record("tls", result="fail")[0]
  assert "unsupported protocol" in rec["error"], rec
  assert tls_daemon.records("auth") == []
