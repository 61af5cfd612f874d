"""Audit records: connect, auth, login and end carry the right values."""

import pwd

import harness


def session(daemon, delete=True):
  p = daemon.pop3()
  p.user(harness.MAIL_USER)
  p.pass_(harness.MAIL_PASSWORD)
  _, _, octets = p.retr(1)
  if delete:
    p.dele(2)
  p.quit()
  return octets


def test_login_and_end_records_hold_the_session(daemon):
  session(daemon)
  end = daemon.wait_record("end", user=harness.MAIL_USER)[0]
  sid = end["session"]
  same = [r for r in daemon.records() if r.get("session") == sid]
  events = [r["event"] for r in same]
  assert events[0] == "connect"
  assert events.index("auth") < events.index("login") < events.index("end")

  connect = same[0]
  assert connect["client"] == "127.0.0.1"
  port = connect["client_port"]
  assert port.isdigit() and int(port) != daemon.port

  auth = next(r for r in same if r["event"] == "auth")
  assert auth["user"] == harness.MAIL_USER
  assert auth["mech"] == "pass"
  assert auth["tls"] == "no"
  assert auth["result"] == "ok"
  assert auth["client"] == "127.0.0.1" and auth["client_port"] == port

  login = next(r for r in same if r["event"] == "login")
  assert login["user"] == harness.MAIL_USER
  assert login["uid"] == str(pwd.getpwnam(harness.MAIL_USER).pw_uid)
  assert login["mech"] == "pass"

  assert end["reason"] == "quit"
  assert end["messages"] == "3"
  assert end["retrieved"] == "1"
  assert end["deleted"] == "1"
  assert int(end["octets"]) >= len(harness.wire(harness.MESSAGES[0][2]))
  assert float(end["duration"]) >= 0


def test_each_session_has_its_own_id(daemon):
  for _ in range(3):
    session(daemon, delete=False)
  ends = daemon.wait_record("end", count=3, user=harness.MAIL_USER)
  assert len({r["session"] for r in ends}) == 3


def test_failed_auth_is_recorded_without_the_password(daemon):
  p = daemon.pop3()
  p.user(harness.MAIL_USER)
  try:
    p.pass_("Pg7-wrong-Zx8cV")
  except Exception:
    pass
  p.close()
  rec = daemon.wait_record("auth", result="fail")[0]
  assert rec["user"] == harness.MAIL_USER
  assert rec["mech"] == "pass"
  assert "reason" in rec
  assert "Pg7-wrong-Zx8cV" not in daemon.log()


def test_no_password_or_secret_in_any_log(daemon):
  session(daemon, delete=False)
  p = daemon.pop3()
  p.apop(harness.MAIL_USER, harness.APOP_SECRET)
  p.quit()
  daemon.wait_record("end", count=2, user=harness.MAIL_USER)
  text = daemon.log()
  for secret in (harness.MAIL_PASSWORD, harness.APOP_SECRET):
    assert secret not in text


def test_client_strings_are_escaped(daemon):
  p = daemon.pop3()
  try:
    p.user('evil"user\x01 event=login')
    p.pass_("nothing")
  except Exception:
    pass
  p.close()
  for line in daemon.log().splitlines():
    # One record per line, and the forged field stays inside the quotes.
    if "evil" in line:
      rec = harness.parse_record(line)
      assert rec["event"] != "login"
      assert "\x01" not in line
