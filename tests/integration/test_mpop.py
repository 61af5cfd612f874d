"""mpop delivers to a Maildir and an mbox, with USER/PASS and APOP."""

import shutil
import subprocess

import pytest

import harness

pytestmark = pytest.mark.skipif(shutil.which("mpop") is None,
                                reason="mpop is not installed")


def mpop(daemon, tmp_path, delivery, keep, auth="user",
         password=harness.MAIL_PASSWORD):
  conf = tmp_path / "mpoprc"
  conf.write_text(
      "defaults\n"
      "tls off\n"
      "received_header off\n"
      "timeout 30\n"
      "account test\n"
      "host 127.0.0.1\n"
      f"port {daemon.port}\n"
      f"auth {auth}\n"
      f"user {harness.MAIL_USER}\n"
      f"password {password}\n"
      f"delivery {delivery}\n"
      f"keep {'on' if keep else 'off'}\n"
      "only_new off\n"
      f"uidls_file {tmp_path / 'uidls'}\n")
  conf.chmod(0o600)
  return subprocess.run(["mpop", "--file", str(conf), "--quiet", "test"],
                        capture_output=True, text=True, timeout=120)


def out_maildir(tmp_path):
  d = tmp_path / "delivered"
  for sub in ("cur", "new", "tmp"):
    (d / sub).mkdir(parents=True, exist_ok=True)
  return d


def test_delivers_to_maildir_then_deletes(daemon, maildir, tmp_path):
  out = out_maildir(tmp_path)
  done = mpop(daemon, tmp_path, f"maildir {out}", keep=False)
  assert done.returncode == 0, done.stderr
  got = harness.maildir_files(out)
  assert sorted(got) == sorted(harness.message_bodies())
  assert harness.maildir_files(maildir) == []


def test_delivers_to_mbox_and_keeps(daemon, maildir, tmp_path):
  mbox = tmp_path / "mbox"
  done = mpop(daemon, tmp_path, f"mbox {mbox}", keep=True)
  assert done.returncode == 0, done.stderr
  text = mbox.read_bytes()
  assert text.count(b"\nFrom ") + text.startswith(b"From ") == 3
  for body in harness.message_bodies():
    # mbox quotes body lines that start with "From "; ours have none.
    assert body.split(b"\n\n", 1)[1] in text
  assert harness.maildir_files(maildir) == harness.message_bodies()


def test_apop_login_works(daemon, maildir, tmp_path):
  out = out_maildir(tmp_path)
  done = mpop(daemon, tmp_path, f"maildir {out}", keep=True, auth="apop",
              password=harness.APOP_SECRET)
  assert done.returncode == 0, done.stderr
  assert len(harness.maildir_files(out)) == 3


def test_wrong_password_fails_cleanly(daemon, maildir, tmp_path):
  out = out_maildir(tmp_path)
  done = mpop(daemon, tmp_path, f"maildir {out}", keep=False,
              password="not-the-password")
  assert done.returncode != 0
  assert harness.maildir_files(out) == []
  assert len(harness.maildir_files(maildir)) == 3
