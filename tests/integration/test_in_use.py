"""A second session on a mailbox in use gets -ERR [IN-USE]."""

import poplib

import pytest

import harness


def test_second_session_is_refused_while_first_is_open(daemon):
  first = daemon.login()
  second = daemon.pop3()
  second.user(harness.MAIL_USER)
  with pytest.raises(poplib.error_proto) as e:
    second.pass_(harness.MAIL_PASSWORD)
  assert e.value.args[0].startswith(b"-ERR [IN-USE]")
  second.close()
  # The first session is unharmed.
  assert first.stat()[0] == 3
  first.quit()
  daemon.wait_record("end", reason="quit", user=harness.MAIL_USER)


def test_apop_session_is_refused_too(daemon):
  first = daemon.login()
  second = daemon.pop3()
  with pytest.raises(poplib.error_proto) as e:
    second.apop(harness.MAIL_USER, harness.APOP_SECRET)
  assert e.value.args[0].startswith(b"-ERR [IN-USE]")
  second.close()
  first.quit()


def test_mailbox_is_free_again_after_quit(daemon):
  first = daemon.login()
  first.dele(1)
  first.quit()
  daemon.wait_record("end", reason="quit", user=harness.MAIL_USER)
  second = daemon.login()
  assert second.stat()[0] == 2
  second.quit()


def test_mailbox_is_free_again_after_a_drop(daemon):
  first = daemon.login()
  first.close()
  daemon.wait_record("end", user=harness.MAIL_USER)
  second = daemon.login()
  assert second.stat()[0] == 3
  second.quit()
