"""Failed and refused logins: same answers, no privileged accounts, limits."""

import poplib
import time

import pytest

import harness


def pass_error(daemon, user, password, p=None):
  """The -ERR line USER+PASS ends with, and how long PASS took."""
  own = p is None
  p = p or daemon.pop3()
  try:
    try:
      p.user(user)
    except poplib.error_proto as e:
      return e.args[0], 0.0
    start = time.monotonic()
    with pytest.raises(poplib.error_proto) as e:
      p.pass_(password)
    return e.value.args[0], time.monotonic() - start
  finally:
    if own:
      p.close()


def test_wrong_password_and_unknown_user_answer_the_same(daemon):
  wrong, t_wrong = pass_error(daemon, harness.MAIL_USER, "wrong-password")
  unknown, t_unknown = pass_error(daemon, "nosuchuser", "wrong-password")
  assert wrong == unknown
  assert wrong.startswith(b"-ERR [AUTH]")
  # Both wait out the failure delay; neither is quicker by a margin a
  # client could use to tell real accounts from missing ones.
  floor = harness.FAIL_DELAY_MS / 1000 * 0.9
  assert t_wrong >= floor and t_unknown >= floor
  assert abs(t_wrong - t_unknown) < 1.0
  records = daemon.wait_record("auth", count=2, result="fail")
  assert {r["user"] for r in records} >= {harness.MAIL_USER, "nosuchuser"}


def test_root_cannot_log_in(daemon):
  root, _ = pass_error(daemon, "root", "any-password")
  wrong, _ = pass_error(daemon, harness.MAIL_USER, "wrong-password")
  assert root == wrong


def test_system_account_below_min_uid_cannot_log_in(daemon):
  # The right password for a uid below min_uid still fails, and looks
  # like any other failure.
  refused, _ = pass_error(daemon, harness.SYSTEM_USER,
                          harness.SYSTEM_PASSWORD)
  wrong, _ = pass_error(daemon, harness.MAIL_USER, "wrong-password")
  assert refused == wrong
  rec = daemon.wait_record("auth", user=harness.SYSTEM_USER)[0]
  assert rec["result"] in ("fail", "refused")


def test_min_uid_above_the_user_refuses_the_right_password(start_daemon):
  import pwd
  uid = pwd.getpwnam(harness.MAIL_USER).pw_uid
  daemon = start_daemon({"auth": {"min_uid": uid + 1}})
  err, _ = pass_error(daemon, harness.MAIL_USER, harness.MAIL_PASSWORD)
  assert err.startswith(b"-ERR")


def test_session_ends_after_max_failures(daemon):
  p = daemon.pop3()
  for _ in range(3):
    pass_error(daemon, harness.MAIL_USER, "wrong-password", p)
  # The third failure closed the connection.
  with pytest.raises((poplib.error_proto, EOFError, OSError)):
    p.user(harness.MAIL_USER)
    p.pass_(harness.MAIL_PASSWORD)
  p.close()
  daemon.wait_record("end", reason="auth-failures")


def test_a_new_session_may_log_in_after_failures(daemon):
  pass_error(daemon, harness.MAIL_USER, "wrong-password")
  p = daemon.pop3()
  p.user(harness.MAIL_USER)
  assert p.pass_(harness.MAIL_PASSWORD).startswith(b"+OK")
  p.quit()


def test_default_policy_refuses_user_in_clear(start_daemon):
  daemon = start_daemon({"auth": {"cleartext": None}})
  p = daemon.pop3()
  caps = p.capa()
  assert "USER" not in caps
  assert "SASL" not in caps or "PLAIN" not in caps["SASL"]
  with pytest.raises(poplib.error_proto) as e:
    p.user(harness.MAIL_USER)
    p.pass_(harness.MAIL_PASSWORD)
  assert e.value.args[0].startswith(b"-ERR [AUTH]")
  p.close()
  rec = daemon.wait_record("auth", result="refused")[0]
  assert rec["tls"] == "no"
  # Nothing reached PAM, so nothing about a password can be in the log.
  assert harness.MAIL_PASSWORD not in daemon.log()


def test_cleartext_never_refuses_user(start_daemon):
  daemon = start_daemon({"auth": {"cleartext": "never"}})
  p = daemon.pop3()
  assert "USER" not in p.capa()
  with pytest.raises(poplib.error_proto) as e:
    p.user(harness.MAIL_USER)
    p.pass_(harness.MAIL_PASSWORD)
  assert e.value.args[0].startswith(b"-ERR [AUTH]")
  # APOP still works.
  p = daemon.pop3()
  assert p.apop(harness.MAIL_USER, harness.APOP_SECRET).startswith(b"+OK")
  p.quit()


def test_address_that_keeps_failing_is_banned(start_daemon):
  daemon = start_daemon({"auth": {"ban_after_failures": 2,
                                  "ban_window": 60, "ban_time": 60}})
  for _ in range(2):
    pass_error(daemon, harness.MAIL_USER, "wrong-password")
  # Even the right password is refused now, before any login dialogue.
  with pytest.raises(poplib.error_proto) as e:
    p = daemon.pop3()
    p.user(harness.MAIL_USER)
    p.pass_(harness.MAIL_PASSWORD)
  assert e.value.args[0].startswith(b"-ERR [SYS/TEMP]")
  daemon.wait_record("refused", reason="address-banned")
