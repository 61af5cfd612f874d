"""fetchmail downloads every message, then deletes them or keeps them."""

import shutil

import pytest

import harness

pytestmark = pytest.mark.skipif(shutil.which("fetchmail") is None,
                                reason="fetchmail is not installed")


def fetch(daemon, tmp_path, keep):
  return harness.run_fetchmail(daemon.port, tmp_path, keep=keep)


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
