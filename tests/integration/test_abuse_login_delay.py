"""RFC 2449 LOGIN-DELAY is announced and enforced; EXPIRE is announced."""

import poplib
import time

import pytest

import harness

DELAY = 2


def login(daemon, user=harness.MAIL_USER, password=harness.MAIL_PASSWORD):
  p = daemon.pop3()
  p.user(user)
  return p, p.pass_(password)


def test_capa_announces_login_delay_and_expire_before_and_after_login(
    start_daemon):
  daemon = start_daemon({"session": {"login_delay": DELAY, "expire": "never"}})
  p = daemon.pop3()
  caps = p.capa()
  assert caps["LOGIN-DELAY"] == [str(DELAY)]
  assert caps["EXPIRE"] == ["NEVER"]
  p.user(harness.MAIL_USER)
  p.pass_(harness.MAIL_PASSWORD)
  caps = p.capa()
  assert caps["LOGIN-DELAY"] == [str(DELAY)]
  assert caps["EXPIRE"] == ["NEVER"]
  p.quit()


def test_expire_in_days_is_announced(start_daemon):
  daemon = start_daemon({"session": {"expire": 30}})
  p = daemon.pop3()
  caps = p.capa()
  assert caps["EXPIRE"] == ["30"]
  assert "LOGIN-DELAY" not in caps
  p.quit()


def test_nothing_is_announced_by_default(daemon):
  p = daemon.pop3()
  caps = p.capa()
  assert "LOGIN-DELAY" not in caps and "EXPIRE" not in caps
  p.quit()


def test_login_sooner_than_the_delay_is_refused_with_login_delay(
    start_daemon):
  daemon = start_daemon({"session": {"login_delay": DELAY}})
  p, ok = login(daemon)
  assert ok.startswith(b"+OK")
  p.quit()

  p = daemon.pop3()
  p.user(harness.MAIL_USER)
  with pytest.raises(poplib.error_proto) as e:
    p.pass_(harness.MAIL_PASSWORD)
  text = e.value.args[0]
  assert text.startswith(b"-ERR [LOGIN-DELAY] wait ")
  assert text.endswith(b" more seconds before logging in again")
  # The session stays in AUTHORIZATION: the client may try again.
  assert "USER" in p.capa()
  p.quit()
  rec = daemon.wait_record("auth", result="refused", reason="login delay")[0]
  assert rec["user"] == harness.MAIL_USER

  # Another user is not held back.
  q, ok = login(daemon, harness.OTHER_USER, harness.OTHER_PASSWORD)
  assert ok.startswith(b"+OK")
  q.quit()

  time.sleep(DELAY + 0.2)
  p, ok = login(daemon)
  assert ok.startswith(b"+OK")
  p.quit()


def test_wrong_password_is_not_told_about_the_delay(start_daemon):
  # Only a client that proved who it is learns when the user last read
  # mail.
  daemon = start_daemon({"session": {"login_delay": DELAY}})
  p, _ = login(daemon)
  p.quit()
  p = daemon.pop3()
  p.user(harness.MAIL_USER)
  with pytest.raises(poplib.error_proto) as e:
    p.pass_("wrong-password")
  assert e.value.args[0] == b"-ERR [AUTH] authentication failed"
  p.close()


def test_login_delay_holds_for_apop_too(start_daemon):
  daemon = start_daemon({"session": {"login_delay": DELAY}})
  p = daemon.pop3()
  assert p.apop(harness.MAIL_USER, harness.APOP_SECRET).startswith(b"+OK")
  p.quit()
  p = daemon.pop3()
  with pytest.raises(poplib.error_proto) as e:
    p.apop(harness.MAIL_USER, harness.APOP_SECRET)
  assert e.value.args[0].startswith(b"-ERR [LOGIN-DELAY]")
  p.close()
