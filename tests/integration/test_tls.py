"""TLS: STLS and POP3S, and the default policy allowing passwords on them."""

import poplib
import shutil
import socket
import ssl
import subprocess

import pytest

import harness


def context():
  # The test certificate is self-signed: encryption is what is tested.
  ctx = ssl.create_default_context()
  ctx.check_hostname = False
  ctx.verify_mode = ssl.CERT_NONE
  return ctx


def test_stls_then_user_pass_logs_in(tls_daemon):
  p = tls_daemon.pop3()
  caps = p.capa()
  assert "STLS" in caps and "USER" not in caps
  assert p.stls(context()).startswith(b"+OK")
  caps = p.capa()
  assert "STLS" not in caps
  assert "USER" in caps and "PLAIN" in caps.get("SASL", [])
  p.user(harness.MAIL_USER)
  p.pass_(harness.MAIL_PASSWORD)
  assert p.stat()[0] == 3
  _, lines, _ = p.retr(2)
  assert b"\r\n".join(lines) + b"\r\n" == harness.wire(harness.MESSAGES[1][2])
  p.quit()
  rec = tls_daemon.wait_record("login", user=harness.MAIL_USER)[0]
  assert rec["tls"] == "yes"
  auth = tls_daemon.wait_record("auth", user=harness.MAIL_USER)[0]
  assert auth["tls"] == "yes" and auth["result"] == "ok"


def test_implicit_tls_port_logs_in(tls_daemon):
  p = poplib.POP3_SSL("127.0.0.1", tls_daemon.tls_port, context=context(),
                      timeout=10)
  tls_daemon.clients.append(p)
  assert "USER" in p.capa()
  p.user(harness.MAIL_USER)
  p.pass_(harness.MAIL_PASSWORD)
  assert p.stat()[0] == 3
  p.quit()


def test_plain_link_still_refuses_passwords(tls_daemon):
  p = tls_daemon.pop3()
  with pytest.raises(poplib.error_proto) as e:
    p.user(harness.MAIL_USER)
    p.pass_(harness.MAIL_PASSWORD)
  assert e.value.args[0].startswith(b"-ERR [AUTH]")


def test_commands_pipelined_behind_stls_are_discarded(tls_daemon):
  with socket.create_connection(("127.0.0.1", tls_daemon.port),
                                timeout=10) as raw:
    f = raw.makefile("rb")
    assert f.readline().startswith(b"+OK")
    raw.sendall(b"STLS\r\nUSER " + harness.MAIL_USER.encode() + b"\r\n")
    assert f.readline().startswith(b"+OK")
    with context().wrap_socket(raw) as tls:
      tf = tls.makefile("rwb")
      # Had USER survived the handshake, PASS would be accepted now.
      tf.write(b"PASS " + harness.MAIL_PASSWORD.encode() + b"\r\n")
      tf.flush()
      assert tf.readline().startswith(b"-ERR")
      tf.write(b"QUIT\r\n")
      tf.flush()
      tf.readline()


def test_stls_twice_is_refused(tls_daemon):
  p = tls_daemon.pop3()
  p.stls(context())
  with pytest.raises(poplib.error_proto):
    p._shortcmd("STLS")
  p.quit()


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl")
def test_curl_with_stls_retrieves_byte_exact(tls_daemon):
  url = f"pop3://127.0.0.1:{tls_daemon.port}/1"
  done = subprocess.run(
      ["curl", "--silent", "--show-error", "--max-time", "30", "--insecure",
       "--ssl-reqd", "--user", f"{harness.MAIL_USER}:{harness.MAIL_PASSWORD}",
       url], capture_output=True, timeout=60)
  assert done.returncode == 0, done.stderr
  assert done.stdout == harness.wire(harness.MESSAGES[0][2])


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl")
def test_curl_over_pop3s_lists(tls_daemon):
  url = f"pop3s://127.0.0.1:{tls_daemon.tls_port}/"
  done = subprocess.run(
      ["curl", "--silent", "--show-error", "--max-time", "30", "--insecure",
       "--user", f"{harness.MAIL_USER}:{harness.MAIL_PASSWORD}", url],
      capture_output=True, timeout=60)
  assert done.returncode == 0, done.stderr
  assert len(done.stdout.decode().splitlines()) == 3


@pytest.mark.skipif(shutil.which("fetchmail") is None, reason="no fetchmail")
def test_fetchmail_with_stls_downloads_all(tls_daemon, maildir, tmp_path):
  got = harness.run_fetchmail(tls_daemon.port, tmp_path,
                              rc_ssl="  sslproto 'tls1.2+' no sslcertck\n")
  assert len(got) == 3
  assert harness.maildir_files(maildir) == []


@pytest.mark.skipif(shutil.which("mpop") is None, reason="no mpop")
def test_mpop_with_stls_delivers(tls_daemon, maildir, tmp_path):
  delivered = tmp_path / "delivered"
  for sub in ("cur", "new", "tmp"):
    (delivered / sub).mkdir(parents=True)
  conf = tmp_path / "mpoprc"
  conf.write_text(
      "account test\n"
      "host 127.0.0.1\n"
      f"port {tls_daemon.port}\n"
      "tls on\ntls_starttls on\ntls_certcheck off\n"
      "auth user\n"
      f"user {harness.MAIL_USER}\n"
      f"password {harness.MAIL_PASSWORD}\n"
      f"delivery maildir {delivered}\n"
      "keep on\nonly_new off\nreceived_header off\n"
      f"uidls_file {tmp_path / 'uidls'}\n")
  conf.chmod(0o600)
  done = subprocess.run(["mpop", "--file", str(conf), "--quiet", "test"],
                        capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr
  assert sorted(harness.maildir_files(delivered)) == sorted(
      harness.message_bodies())
