"""SASL PLAIN (RFC 5034, RFC 4616): offered and refused like USER/PASS."""

import base64
import poplib
import socket

import pytest

import harness


def plain(user, password, authzid=""):
  raw = f"{authzid}\0{user}\0{password}".encode()
  return base64.b64encode(raw).decode()


def auth_plain(daemon, user, password):
  """The answer to AUTH PLAIN with an initial response."""
  p = daemon.pop3()
  try:
    return p._shortcmd(f"AUTH PLAIN {plain(user, password)}"), p
  except poplib.error_proto as e:
    return e.args[0], p


def test_capa_offers_plain_where_passwords_are_allowed(daemon):
  caps = daemon.pop3().capa()
  assert "PLAIN" in caps.get("SASL", [])


def test_plain_logs_in(daemon):
  answer, p = auth_plain(daemon, harness.MAIL_USER, harness.MAIL_PASSWORD)
  assert answer.startswith(b"+OK"), answer
  assert p.stat()[0] == 3
  p.quit()
  daemon.wait_record("login", user=harness.MAIL_USER, mech="plain")


def test_plain_with_a_continuation_logs_in(daemon):
  with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as s:
    f = s.makefile("rwb")
    assert f.readline().startswith(b"+OK")
    f.write(b"AUTH PLAIN\r\n")
    f.flush()
    assert f.readline().startswith(b"+ ")
    f.write(plain(harness.MAIL_USER, harness.MAIL_PASSWORD).encode()
            + b"\r\n")
    f.flush()
    assert f.readline().startswith(b"+OK")
    f.write(b"QUIT\r\n")
    f.flush()
    assert f.readline().startswith(b"+OK")


def test_wrong_password_answers_like_user_pass(daemon):
  answer, p = auth_plain(daemon, harness.MAIL_USER, "wrong-password")
  p.close()
  q = daemon.pop3()
  q.user(harness.MAIL_USER)
  with pytest.raises(poplib.error_proto) as e:
    q.pass_("wrong-password")
  assert answer == e.value.args[0]
  assert "wrong-password" not in daemon.log()


def test_default_policy_refuses_plain_in_clear(start_daemon):
  daemon = start_daemon({"auth": {"cleartext": None}})
  assert "PLAIN" not in daemon.pop3().capa().get("SASL", [])
  answer, _ = auth_plain(daemon, harness.MAIL_USER, harness.MAIL_PASSWORD)
  assert answer.startswith(b"-ERR [AUTH]"), answer
  daemon.wait_record("auth", result="refused", mech="plain")


def test_payload_is_not_logged(daemon):
  payload = plain(harness.MAIL_USER, harness.MAIL_PASSWORD)
  answer, p = auth_plain(daemon, harness.MAIL_USER, harness.MAIL_PASSWORD)
  p.quit()
  daemon.wait_record("end", user=harness.MAIL_USER)
  assert payload not in daemon.log()
  assert harness.MAIL_PASSWORD not in daemon.log()
