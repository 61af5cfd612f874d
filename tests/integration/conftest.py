"""Fixtures: test accounts, a fresh Maildir, pop.auth, a running popguard."""

import grp
import os
import pathlib
import pwd
import shutil

import pytest

import harness


def pytest_sessionstart(session):
  # meson reads 77 as "skipped": these tests need root (useradd, PAM with
  # /etc/shadow, a daemon that changes user ids).
  if os.geteuid() != 0:
    pytest.exit("integration tests need root", returncode=77)
  for binary in (harness.POPGUARD, harness.POPAUTH, harness.WORKER):
    if not binary.exists():
      pytest.exit(f"{binary} is missing; build first", returncode=1)


@pytest.fixture(scope="session")
def accounts():
  """The mail users, a system user, the front's user and the PAM file.

  Accounts this fixture made are removed at the end; one that existed
  before is locked instead, so that no known password outlives the run.
  """
  harness.ensure_front_user()
  harness.ensure_pam_file()
  harness.remove_stale_accounts()
  made = {
      harness.MAIL_USER: harness.ensure_user(harness.MAIL_USER,
                                             harness.MAIL_PASSWORD),
      harness.OTHER_USER: harness.ensure_user(harness.OTHER_USER,
                                              harness.OTHER_PASSWORD),
      harness.SYSTEM_USER: harness.ensure_user(
          harness.SYSTEM_USER, harness.SYSTEM_PASSWORD, system=True),
  }
  yield
  for user, created in made.items():
    if created:
      harness.run("userdel", "--remove", user, check=False)
    else:
      harness.run("passwd", "--lock", user, check=False)


@pytest.fixture(scope="session")
def shared_worker():
  d, worker = harness.make_shared_worker_dir()
  yield worker
  shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def maildir(accounts):
  """The mail user's ~/Maildir holding harness.MESSAGES, fresh per test."""
  return harness.fill_maildir(harness.MAIL_USER)


@pytest.fixture
def popauth_files(tmp_path, accounts):
  """A pop.auth giving MAIL_USER the APOP secret (OTHER_USER has none)."""
  d = tmp_path / "popauth"
  d.mkdir(mode=0o700)
  return harness.make_popauth(d, {harness.MAIL_USER: harness.APOP_SECRET})


@pytest.fixture
def config(tmp_path, popauth_files, shared_worker):
  """The test configuration as sections; a test may change it first."""
  db, key = popauth_files
  return harness.base_config(harness.free_port(), db, key, shared_worker,
                             tmp_path / "penalties")


@pytest.fixture
def start_daemon(tmp_path, maildir, config):
  """Starts popguard -f; every daemon started is stopped after the test."""
  started = []

  def start(overrides=None, args=(), activated=()):
    workdir = tmp_path / f"daemon{len(started)}"
    workdir.mkdir()
    sections = harness.merge(
        {k: dict(v) for k, v in config.items()}, overrides)
    d = harness.Daemon(workdir, sections, args, activated)
    started.append(d)
    return d.start()

  yield start
  errors = []
  for d in started:
    try:
      d.stop()
    except AssertionError as e:
      errors.append(str(e))
  assert not errors, "\n".join(errors)


@pytest.fixture
def daemon(start_daemon):
  """popguard with the test configuration (clear text allowed)."""
  return start_daemon()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
  """A self-signed certificate and key for HOSTNAME (root-only key)."""
  d = tmp_path_factory.mktemp("tls")
  cert, key = d / "cert.pem", d / "key.pem"
  harness.run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
              "-keyout", key, "-out", cert, "-days", "2",
              "-subj", f"/CN={harness.HOSTNAME}")
  key.chmod(0o600)
  return cert, key


@pytest.fixture
def tls_daemon(start_daemon, tls_files):
  """popguard with the default policy (tls-only), STLS and a POP3S port."""
  cert, key = tls_files
  tls_port = harness.free_port()
  d = start_daemon({
      "server": {"listen_tls": [f"127.0.0.1:{tls_port}"]},
      "auth": {"cleartext": None},
      "tls": {"certificate": str(cert), "private_key": str(key)},
  })
  d.tls_port = tls_port
  return d


@pytest.fixture
def mbox(accounts):
  """/var/mail/USER holding the three test messages, owned by the user."""
  pw = pwd.getpwnam(harness.MAIL_USER)
  path = pathlib.Path("/var/mail") / harness.MAIL_USER
  path.write_bytes(harness.mbox_text(harness.message_bodies()))
  try:
    gid = grp.getgrnam("mail").gr_gid
  except KeyError:
    gid = pw.pw_gid
  os.chown(path, pw.pw_uid, gid)
  path.chmod(0o660)
  yield path
  for p in (path, path.with_name(path.name + ".lock")):
    if p.exists():
      p.unlink()
