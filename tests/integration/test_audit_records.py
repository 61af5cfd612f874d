"""Audit records carry every field the trail needs, at the right level."""

import re
import signal
import socket
import ssl
import subprocess

import pytest

import harness

WHERE = ("client", "client_port", "server", "server_port", "tls")


def level_of(log, session, event):
  """The level word of the foreground log line of one record."""
  pattern = re.compile(r"popguard\[\d+\]: (\w+): session=" + session +
                       r" event=" + re.escape(event) + r" ")
  for line in log.splitlines():
    m = pattern.search(line)
    if m:
      return m.group(1)
  raise AssertionError(f"no {event} record of session {session}")


def session_records(daemon, sid):
  return [r for r in daemon.records() if r.get("session") == sid]


def assert_where(rec, daemon, tls="no"):
  for key in WHERE:
    assert key in rec, (key, rec)
  assert rec["client"] == "127.0.0.1"
  assert rec["client_port"].isdigit()
  assert rec["server"] == "127.0.0.1"
  assert rec["server_port"] == str(daemon.port)
  assert rec["tls"] == tls


def test_successful_login_records_auth_login_and_end(daemon):
  p = daemon.pop3()
  p.user(harness.MAIL_USER)
  p.pass_(harness.MAIL_PASSWORD)
  p.retr(1)
  p.retr(2)
  p.dele(1)
  p.quit()
  end = daemon.wait_record("end", user=harness.MAIL_USER)[0]
  recs = {r["event"]: r for r in session_records(daemon, end["session"])}
  assert list(recs) == ["connect", "auth", "login", "end"]
  for rec in recs.values():
    assert_where(rec, daemon)
  assert recs["connect"]["implicit_tls"] == "no"

  auth = recs["auth"]
  assert (auth["result"], auth["mech"], auth["user"]) == (
      "ok", "pass", harness.MAIL_USER)
  assert "reason" not in auth

  assert end["reason"] == "quit"
  assert (end["messages"], end["retrieved"], end["deleted"]) == ("3", "2",
                                                                  "1")
  sent = sum(len(harness.wire(m)) for m in harness.message_bodies()[:2])
  assert int(end["octets"]) >= sent
  assert re.fullmatch(r"\d+\.\d{3}", end["duration"])

  log = daemon.log()
  sid = end["session"]
  assert level_of(log, sid, "auth") == "notice"
  assert level_of(log, sid, "login") == "notice"
  assert level_of(log, sid, "end") == "notice"


def test_failed_auth_is_a_warning_with_its_reason(daemon):
  p = daemon.pop3()
  p.user("pg-no-such-user")
  with pytest.raises(harness.poplib.error_proto):
    p.pass_("Pg7-wrong-Aa1bB")
  p.close()
  rec = daemon.wait_record("auth", result="fail")[0]
  assert_where(rec, daemon)
  assert rec["user"] == "pg-no-such-user"
  assert rec["mech"] == "pass"
  assert rec["reason"] == "unknown user"
  assert level_of(daemon.log(), rec["session"], "auth") == "warning"
  end = daemon.wait_record("end", session=rec["session"])[0]
  assert end["user"] == "pg-no-such-user"


def test_policy_refusal_is_recorded_as_refused(start_daemon):
  d = start_daemon({"auth": {"cleartext": "never"}})
  with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
    f = s.makefile("rwb")
    f.readline()
    f.write(b"USER " + harness.MAIL_USER.encode() + b"\r\n")
    f.flush()
    assert f.readline().startswith(b"-ERR [AUTH]")
    f.write(b"QUIT\r\n")
    f.flush()
    f.readline()
  rec = d.wait_record("auth", result="refused")[0]
  assert_where(rec, d)
  assert rec["mech"] == "pass"
  assert rec["user"] == harness.MAIL_USER
  assert rec["reason"]
  assert level_of(d.log(), rec["session"], "auth") == "warning"


@pytest.fixture
def tls_files(tmp_path):
  key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
  subprocess.run(
      ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
       "-keyout", str(key), "-out", str(cert), "-days", "2",
       "-subj", "/CN=localhost"],
      check=True, capture_output=True)
  return key, cert


def test_tls_session_records_protocol_and_cipher(start_daemon, tls_files):
  key, cert = tls_files
  d = start_daemon({"tls": {"certificate": str(cert), "private_key": str(key)},
                    "auth": {"cleartext": "tls-only"}})
  ctx = ssl.create_default_context(cafile=str(cert))
  ctx.check_hostname = False
  p = d.pop3()
  p.stls(context=ctx)
  protocol, cipher = p.sock.version(), p.sock.cipher()[0]
  p.user(harness.MAIL_USER)
  p.pass_(harness.MAIL_PASSWORD)
  p.quit()
  end = d.wait_record("end", user=harness.MAIL_USER)[0]
  recs = {r["event"]: r for r in session_records(d, end["session"])}
  assert recs["connect"]["tls"] == "no"
  assert recs["tls"]["result"] == "ok"
  for event in ("tls", "auth", "login", "end"):
    assert_where(recs[event], d, tls="yes")
    assert recs[event]["tls_protocol"] == protocol
    assert recs[event]["tls_cipher"] == cipher


def test_reload_is_recorded_with_the_config_path_and_result(daemon):
  daemon.signal(signal.SIGHUP)
  ok = daemon.wait_record("reload", result="ok")[0]
  assert ok["config"] == str(daemon.config_path)
  assert "session" not in ok

  good = daemon.config_path.read_text()
  daemon.config_path.write_text(good + "\n[nonsense]\nkey = 1\n")
  daemon.signal(signal.SIGHUP)
  bad = daemon.wait_record("reload", result="fail")[0]
  assert bad["config"] == str(daemon.config_path)
  assert "nonsense" in bad["error"]
  assert re.search(r"popguard\[\d+\]: error: event=reload result=fail",
                   daemon.log())
  daemon.config_path.write_text(good)


def test_start_and_stop_are_recorded(daemon):
  start = daemon.wait_record("start")[0]
  assert start["listen"] == f"127.0.0.1:{daemon.port}"
  daemon.stop()
  stop = harness.records(daemon.log(), "stop")
  assert len(stop) == 1 and stop[0]["sessions"].isdigit()
