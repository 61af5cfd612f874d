"""curl's POP3 client: list, byte-exact retrieval, DELE, APOP."""

import shutil
import subprocess

import pytest

import harness

pytestmark = pytest.mark.skipif(shutil.which("curl") is None,
                                reason="curl is not installed")


def curl(daemon, path="/", *extra, password=harness.MAIL_PASSWORD):
  url = f"pop3://127.0.0.1:{daemon.port}{path}"
  done = subprocess.run(["curl", "--silent", "--show-error",
                         "--max-time", "30",
                         "--user", f"{harness.MAIL_USER}:{password}",
                         *extra, url],
                        capture_output=True, timeout=60)
  assert done.returncode == 0, done.stderr
  return done.stdout


def test_lists_every_message_with_its_size(daemon):
  out = curl(daemon, "/")
  lines = out.decode().splitlines()
  assert [line.split()[0] for line in lines] == ["1", "2", "3"]
  wires = [harness.wire(m) for m in harness.message_bodies()]
  assert int(lines[0].split()[1]) == len(wires[0])
  assert int(lines[2].split()[1]) == len(wires[2])
  rec = daemon.wait_record("login", user=harness.MAIL_USER)[0]
  # curl takes SASL PLAIN when CAPA offers it, else USER/PASS.
  assert rec["mech"] in ("plain", "pass")


def test_retrieves_each_message_byte_exact(daemon):
  for n, body in enumerate(harness.message_bodies(), start=1):
    assert curl(daemon, f"/{n}") == harness.wire(body)


def test_dele_removes_the_message(daemon, maildir):
  # DELE answers with one line, no body: --head tells curl not to wait
  # for one.
  curl(daemon, "/2", "--request", "DELE", "--head")
  bodies = harness.message_bodies()
  assert harness.maildir_files(maildir) == [bodies[0], bodies[2]]
  lines = curl(daemon, "/").decode().splitlines()
  assert len(lines) == 2


def test_apop_with_the_popauth_secret(daemon):
  body = harness.MESSAGES[0][2]
  got = curl(daemon, "/1", "--login-options", "AUTH=+APOP",
             password=harness.APOP_SECRET)
  assert got == harness.wire(body)
  daemon.wait_record("login", user=harness.MAIL_USER, mech="apop")
