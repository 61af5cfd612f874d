"""fail2ban's filter matches every failed login of a real run, and no more."""

import base64
import hashlib
import re
import shutil
import socket

import pytest

import harness

FILTER = harness.SOURCE / "packaging" / "fail2ban" / "filter.d" / "popguard.conf"
JAIL = harness.SOURCE / "packaging" / "fail2ban" / "jail.d" / "popguard.conf"
FAIL2BAN_FILTERS = harness.pathlib.Path("/etc/fail2ban/filter.d")

# Tried by a client that hopes to frame another address in the log (one
# word: USER takes no spaces).
FORGED_USER = 'x"result=fail"client=192.0.2.66"'


def converse(port, *commands):
  """Sends each command on one connection; returns the answers."""
  with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
    f = s.makefile("rwb")
    greeting = f.readline()
    answers = []
    for cmd in commands:
      if callable(cmd):
        cmd = cmd(greeting)
      f.write(cmd.encode() + b"\r\n")
      f.flush()
      answers.append(f.readline())
    f.write(b"QUIT\r\n")
    f.flush()
    f.readline()
  return answers


def apop(user, secret):
  def command(greeting):
    challenge = re.search(rb"<[^>]*>", greeting).group(0)
    return f"APOP {user} " + hashlib.md5(challenge +
                                          secret.encode()).hexdigest()
  return command


def plain(user, password):
  raw = f"\0{user}\0{password}".encode()
  return "AUTH PLAIN " + base64.b64encode(raw).decode()


@pytest.fixture
def filter_dir(tmp_path):
  """The filter beside Debian's common.conf, as installed."""
  if not shutil.which("fail2ban-regex"):
    pytest.fail("fail2ban-regex is missing: apt-get install fail2ban")
  d = tmp_path / "fail2ban" / "filter.d"
  d.mkdir(parents=True)
  shutil.copy(FAIL2BAN_FILTERS / "common.conf", d)
  shutil.copy(FILTER, d)
  return d


def fail2ban_regex(log, filter_path, mode):
  r = harness.run("fail2ban-regex", "-o", "ip", log,
                  f"{filter_path}[mode={mode}]", check=False)
  assert r.returncode == 0, r.stdout + r.stderr
  return r.stdout.split()


def test_filter_counts_failures_and_takes_the_client_address(
    start_daemon, filter_dir):
  # pgtest has an APOP secret and must use it, so a password for it is a
  # policy refusal; the other failures are real guesses.
  d = start_daemon({"auth": {"apop_users_must_use_apop": True,
                             "max_failures": 10}})
  failures = {
      "wrong password": ["USER " + harness.OTHER_USER, "PASS Pg7-bad-1"],
      "unknown user": ["USER pg-nobody-here", "PASS Pg7-bad-2"],
      "APOP wrong digest": [apop(harness.MAIL_USER, "Pg7-bad-3")],
      "APOP without an entry": [apop(harness.OTHER_USER, "Pg7-bad-4")],
      "AUTH PLAIN failure": [plain(harness.OTHER_USER, "Pg7-bad-5")],
      "system account": ["USER " + harness.SYSTEM_USER,
                         "PASS " + harness.SYSTEM_PASSWORD],
      "forged user name": ["USER " + FORGED_USER, "PASS Pg7-bad-6"],
  }
  for what, commands in failures.items():
    answers = converse(d.port, *commands)
    assert answers[-1].startswith(b"-ERR"), (what, answers)
  # Not failures: a policy refusal and a good login.
  refused = converse(d.port, "USER " + harness.MAIL_USER, "PASS anything")
  assert refused[-1].startswith(b"-ERR [AUTH]")
  ok = converse(d.port, apop(harness.MAIL_USER, harness.APOP_SECRET))
  assert ok[0].startswith(b"+OK")

  d.wait_record("auth", count=len(failures), result="fail")
  d.wait_record("auth", result="refused")
  d.wait_record("end", count=len(failures) + 3)
  d.stop()
  # The forged name reached the log, its quotes escaped.
  assert r'user="x\x22result=fail\x22client=192.0.2.66\x22"' in d.log()

  hosts = fail2ban_regex(d.log_path, filter_dir / "popguard.conf", "normal")
  assert len(hosts) == len(failures)
  assert set(hosts) == {"127.0.0.1"}

  hosts = fail2ban_regex(d.log_path, filter_dir / "popguard.conf",
                         "aggressive")
  assert len(hosts) == len(failures) + 1
  assert set(hosts) == {"127.0.0.1"}


def test_filter_reads_syslog_lines(filter_dir, tmp_path):
  log = tmp_path / "mail.log"
  log.write_text(
      "Dec  3 18:37:38 mx popguard[4344]: session=3f3e8ac44d6e event=auth "
      "result=fail client=2001:db8::7 client_port=35326 server=2001:db8::1 "
      "server_port=110 tls=no mech=pass user=\"bob\" "
      "reason=\"Authentication failure\"\n"
      "Dec  3 18:37:39 mx popguard[4345]: session=3f3e8ac44d6f event=auth "
      "result=ok client=192.0.2.8 client_port=35327 server=192.0.2.1 "
      "server_port=110 tls=no mech=apop user=\"bob\"\n")
  hosts = fail2ban_regex(log, filter_dir / "popguard.conf", "normal")
  assert hosts == ["2001:db8::7"]


def test_jail_names_the_filter_and_both_ports():
  text = JAIL.read_text()
  assert re.search(r"^\[popguard\]$", text, re.M)
  assert re.search(r"^filter\s*=\s*popguard$", text, re.M)
  assert re.search(r"^port\s*=\s*pop3,pop3s$", text, re.M)
