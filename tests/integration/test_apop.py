"""APOP with secrets from pop.auth: success, wrong secret, no entry."""

import hashlib
import poplib
import re
import socket

import pytest

import harness


def apop_error(daemon, user, secret):
  p = daemon.pop3()
  with pytest.raises(poplib.error_proto) as e:
    p.apop(user, secret)
  p.close()
  return e.value.args[0]


def test_challenge_is_unique_and_plain(daemon):
  seen = set()
  for _ in range(5):
    p = daemon.pop3()
    m = re.search(rb"<([^>]*)>", p.getwelcome())
    p.quit()
    assert m, p.getwelcome()
    local, _, host = m.group(1).partition(b"@")
    # mpop and other clients refuse anything beyond these characters.
    assert re.fullmatch(rb"[A-Za-z0-9.-]+", local), local
    assert host == harness.HOSTNAME.encode()
    seen.add(m.group(1))
  assert len(seen) == 5


def test_apop_logs_in_with_the_popauth_secret(daemon):
  p = daemon.pop3()
  assert p.apop(harness.MAIL_USER, harness.APOP_SECRET).startswith(b"+OK")
  assert p.stat()[0] == 3
  p.quit()
  daemon.wait_record("login", user=harness.MAIL_USER, mech="apop")


def test_login_password_is_not_an_apop_secret(daemon):
  apop_error(daemon, harness.MAIL_USER, harness.MAIL_PASSWORD)


def test_user_without_entry_fails_like_a_wrong_digest(daemon):
  wrong = apop_error(daemon, harness.MAIL_USER, "not-the-secret")
  no_entry = apop_error(daemon, harness.OTHER_USER, harness.OTHER_PASSWORD)
  unknown = apop_error(daemon, "nosuchuser", "whatever-secret")
  assert wrong == no_entry == unknown


def test_digest_of_another_challenge_is_refused(daemon):
  """A digest replayed from an earlier connection does not log in."""
  first = daemon.pop3()
  stamp = re.search(rb"<[^>]*>", first.getwelcome()).group(0)
  first.quit()
  digest = hashlib.md5(stamp + harness.APOP_SECRET.encode()).hexdigest()
  with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as s:
    f = s.makefile("rwb")
    assert f.readline().startswith(b"+OK")
    f.write(f"APOP {harness.MAIL_USER} {digest}\r\n".encode())
    f.flush()
    assert f.readline().startswith(b"-ERR")


def test_apop_never_is_not_offered(start_daemon):
  daemon = start_daemon({"auth": {"apop": "never"}})
  p = daemon.pop3()
  assert b"<" not in p.getwelcome()
  with pytest.raises(poplib.error_proto):
    p._shortcmd(f"APOP {harness.MAIL_USER} " + "0" * 32)
  p.quit()


def test_apop_tls_only_is_refused_in_clear(start_daemon):
  daemon = start_daemon({"auth": {"apop": "tls-only"}})
  with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as s:
    f = s.makefile("rwb")
    greeting = f.readline()
    # A right digest, if there is a challenge to make it from.
    stamp = re.search(rb"<[^>]*>", greeting)
    digest = hashlib.md5((stamp.group(0) if stamp else b"")
                         + harness.APOP_SECRET.encode()).hexdigest()
    f.write(f"APOP {harness.MAIL_USER} {digest}\r\n".encode())
    f.flush()
    assert f.readline().startswith(b"-ERR")
