"""fetchmail downloads every message, then deletes them or keeps them."""

import os
import shutil
import subprocess

import pytest

import harness

pytestmark = pytest.mark.skipif(shutil.which("fetchmail") is None,
                                reason="fetchmail is not installed")


def fetch(daemon, tmp_path, keep):
  """Runs fetchmail once; each message lands in its own file in out/."""
  out = tmp_path / "out"
  out.mkdir(exist_ok=True)
  rc = tmp_path / "fetchmailrc"
  rc.write_text(
      "set no bouncemail\n"
      "set invisible\n"
      f"poll 127.0.0.1 service {daemon.port} protocol POP3\n"
      "  auth password timeout 30\n"
      f'  user "{harness.MAIL_USER}" there'
      f' with password "{harness.MAIL_PASSWORD}" is "root" here\n'
      # No STLS yet: without this fetchmail 6.4 insists on TLS.
      '  sslproto ""\n'
      "  fetchall\n"
      f"  {'keep' if keep else 'no keep'}\n"
      # The shell's pid names each delivery: one file per message.
      f'  mda "cat > {out}/msg.$$"\n')
  rc.chmod(0o600)
  env = dict(os.environ, HOME=str(tmp_path), FETCHMAILHOME=str(tmp_path),
             FETCHMAILUSER="root", LC_ALL="C")
  done = subprocess.run(
      ["fetchmail", "--fetchmailrc", str(rc), "--nodetach", "--nosyslog",
       "--idfile", str(tmp_path / "fetchids"), "-v"],
      env=env, capture_output=True, text=True, timeout=120)
  # 0: mail delivered, 1: no mail waiting; anything else is a failure.
  assert done.returncode in (0, 1), done.stdout + done.stderr
  delivered = [p.read_bytes() for p in out.iterdir()]
  for p in out.iterdir():
    p.unlink()
  return delivered


def assert_same_messages(delivered):
  """Each message arrived once and whole (headers may be prepended)."""
  assert len(delivered) == len(harness.MESSAGES)
  for body in harness.message_bodies():
    matches = [d for d in delivered if d.endswith(body)]
    assert len(matches) == 1, body[:80]


def test_downloads_all_then_deletes(daemon, maildir, tmp_path):
  assert_same_messages(fetch(daemon, tmp_path, keep=False))
  assert harness.maildir_files(maildir) == []
  assert fetch(daemon, tmp_path, keep=False) == []


def test_keep_mode_leaves_the_mailbox_as_it_was(daemon, maildir, tmp_path):
  assert_same_messages(fetch(daemon, tmp_path, keep=True))
  assert harness.maildir_files(maildir) == harness.message_bodies()
  # fetchall downloads them again: the server kept every one.
  assert_same_messages(fetch(daemon, tmp_path, keep=True))
