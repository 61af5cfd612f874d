"""No password, APOP digest or AUTH payload reaches any audit sink."""

import base64
import hashlib
import re
import socket

import pytest

import harness
import test_audit_linux

WRONG_PASSWORD = "Pg7-wrongpw-Tt6yU"
EARLY_PASSWORD = "Pg7-early-Kk2pP"
WRONG_APOP_SECRET = "Pg7-apopwrong-Nn4mM"
WRONG_PLAIN_PASSWORD = "Pg7-plainwrong-Ll8kJ"
TYPED_AS_USER = "Pg7-typed-in-user-Hh3gF"
PASS_AFTER_TYPO = "Pg7-then-pass-Dd5sS"


class Line:
  """A raw POP3 conversation, to send exactly what a test needs."""

  def __init__(self, port):
    self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    self.f = self.sock.makefile("rwb")
    self.greeting = self.f.readline()

  def ask(self, line):
    self.f.write(line.encode() + b"\r\n")
    self.f.flush()
    return self.f.readline()

  def challenge(self):
    return re.search(rb"<[^>]*>", self.greeting).group(0)

  def close(self):
    try:
      self.ask("QUIT")
    except OSError:
      pass
    self.sock.close()


def plain(user, password):
  return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def apop_digest(challenge, secret):
  return hashlib.md5(challenge + secret.encode()).hexdigest()


def forms(secret):
  """The ways a secret could show up in a log."""
  raw = secret.encode()
  return {secret, base64.b64encode(raw).decode(), raw.hex(), raw.hex().upper()}


@pytest.fixture
def secrets_daemon(start_daemon, tmp_path):
  json_path = tmp_path / "audit.jsonl"
  d = start_daemon({"audit": {"json_file": str(json_path)},
                    "auth": {"max_failures": 10}},
                   args=("--debug",))
  d.json_path = json_path
  return d


def test_no_secret_in_any_sink(secrets_daemon):
  d = secrets_daemon
  secrets = set()
  with test_audit_linux.kernel_audit_records() as audit:
    # USER/PASS: right, wrong, and PASS before USER.
    c = Line(d.port)
    assert c.ask("PASS " + EARLY_PASSWORD).startswith(b"-ERR")
    assert c.ask("USER " + harness.MAIL_USER).startswith(b"+OK")
    assert c.ask("PASS " + WRONG_PASSWORD).startswith(b"-ERR")
    assert c.ask("USER " + harness.MAIL_USER).startswith(b"+OK")
    assert c.ask("PASS " + harness.MAIL_PASSWORD).startswith(b"+OK")
    c.close()
    secrets |= {EARLY_PASSWORD, WRONG_PASSWORD, harness.MAIL_PASSWORD}

    # APOP: a wrong secret, then the right one.
    c = Line(d.port)
    wrong = apop_digest(c.challenge(), WRONG_APOP_SECRET)
    assert c.ask(f"APOP {harness.MAIL_USER} {wrong}").startswith(b"-ERR")
    c.close()
    c = Line(d.port)
    right = apop_digest(c.challenge(), harness.APOP_SECRET)
    assert c.ask(f"APOP {harness.MAIL_USER} {right}").startswith(b"+OK")
    c.close()
    secrets |= {wrong, right, WRONG_APOP_SECRET, harness.APOP_SECRET}

    # AUTH PLAIN: a failure as a continuation, a success as an initial
    # response.
    c = Line(d.port)
    bad = plain(harness.MAIL_USER, WRONG_PLAIN_PASSWORD)
    assert c.ask("AUTH PLAIN").startswith(b"+ ")
    assert c.ask(bad).startswith(b"-ERR")
    good = plain(harness.MAIL_USER, harness.MAIL_PASSWORD)
    assert c.ask("AUTH PLAIN " + good).startswith(b"+OK")
    c.close()
    secrets |= {bad, good, WRONG_PLAIN_PASSWORD}

    # A system account with its right password.
    c = Line(d.port)
    c.ask("USER " + harness.SYSTEM_USER)
    assert c.ask("PASS " + harness.SYSTEM_PASSWORD).startswith(b"-ERR")
    c.close()
    secrets.add(harness.SYSTEM_PASSWORD)

    # A password typed into USER, then something in PASS.
    c = Line(d.port)
    c.ask("USER " + TYPED_AS_USER)
    assert c.ask("PASS " + PASS_AFTER_TYPO).startswith(b"-ERR")
    c.close()
    secrets.add(PASS_AFTER_TYPO)

    d.wait_record("end", count=2, user=harness.MAIL_USER, reason="quit")
    d.wait_record("end", user=TYPED_AS_USER)
    audit.wait(8, type=test_audit_linux.USER_AUTH)
    kernel = "\n".join(text for _, text in audit.records)

  d.stop()
  sinks = {"stderr log": d.log(),
           "JSON file": d.json_path.read_text(),
           "kernel audit": kernel}
  for name, text in sinks.items():
    assert text, name
    for secret in secrets:
      for form in forms(secret):
        assert form not in text, (name, secret, form)

  # What was typed into USER is recorded as the user name, as sshd and
  # login(1) record it: the client sent it as one.  That it shows in every
  # sink also proves each sink was read whole.
  assert d.wait_record("auth", user=TYPED_AS_USER, result="fail")
  for name, text in sinks.items():
    assert any(form in text for form in forms(TYPED_AS_USER)), name
