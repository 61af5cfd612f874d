"""Linux audit: USER_AUTH, USER_LOGIN and USER_END records, read back."""

import contextlib
import os
import re
import socket
import struct
import time

import pytest

import harness

# From linux/netlink.h and linux/audit.h.
NETLINK_AUDIT = 9
AUDIT_GET = 1000
AUDIT_SET = 1001
AUDIT_STATUS_ENABLED = 0x0001
AUDIT_NLGRP_READLOG = 1
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
USER_AUTH, USER_END, USER_LOGIN = 1100, 1106, 1112

_STATUS = struct.Struct("=8I")  # the head of struct audit_status


def _request(sock, msg_type, payload=b""):
  header = struct.pack("=IHHII", 16 + len(payload), msg_type,
                       NLM_F_REQUEST | NLM_F_ACK, 1, 0)
  sock.send(header + payload)


def _audit_enabled(sock):
  _request(sock, AUDIT_GET)
  while True:
    data = sock.recv(8192)
    _, msg_type = struct.unpack_from("=IH", data)
    if msg_type == AUDIT_GET:
      return _STATUS.unpack_from(data, 16)[1]


def _set_enabled(sock, value):
  _request(sock, AUDIT_SET,
           _STATUS.pack(AUDIT_STATUS_ENABLED, value, 0, 0, 0, 0, 0, 0))
  sock.recv(8192)  # the ack


@contextlib.contextmanager
def audit_switched_on():
  """Audit on for the block, as it was after.

  With audit off the kernel accepts user records and drops them; nothing
  else here needs auditd, which would own the subsystem for the machine.
  """
  sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT)
  sock.settimeout(5)
  try:
    before = _audit_enabled(sock)
    if before == 0:
      _set_enabled(sock, 1)
    yield
    if before == 0:
      _set_enabled(sock, 0)
  finally:
    sock.close()


class KernelAuditReader:
  """Every audit record the kernel emits, from its read-only multicast
  group (what journald reads), kept as (type, text)."""

  def __init__(self):
    self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW,
                              NETLINK_AUDIT)
    self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    self.sock.bind((0, 1 << (AUDIT_NLGRP_READLOG - 1)))
    self.sock.settimeout(0.2)
    self.records = []

  def drain(self):
    while True:
      try:
        data = self.sock.recv(65536)
      except socket.timeout:
        return
      length, msg_type = struct.unpack_from("=IH", data)
      text = data[16:length].decode(errors="replace").rstrip("\0")
      self.records.append((msg_type, text))

  def popguard_records(self):
    """The records of the popguard under test (not PAM's, nor those of
    another popguard on the machine), as dicts of their fields."""
    exe = os.path.realpath(harness.POPGUARD)
    out = []
    for msg_type, text in self.records:
      if msg_type not in (USER_AUTH, USER_LOGIN, USER_END):
        continue
      # A user record's own fields sit inside msg='...'.
      fields = dict(re.findall(r"(\w+)=(\"[^\"]*\"|[^\s']+)", text))
      op = fields.get("op", "")
      if op.startswith("pop3-") or op in ("login", "session-close"):
        fields = {k: v.strip('"') for k, v in fields.items()}
        if fields.get("exe") != exe:
          continue
        fields["type"] = msg_type
        out.append(fields)
    return out

  def wait(self, count, timeout=10.0, **match):
    deadline = time.monotonic() + timeout
    while True:
      self.drain()
      found = [r for r in self.popguard_records()
               if all(r.get(k) == v for k, v in match.items())]
      if len(found) >= count or time.monotonic() > deadline:
        return found
      time.sleep(0.05)

  def close(self):
    self.sock.close()


@contextlib.contextmanager
def kernel_audit_records():
  with audit_switched_on():
    reader = KernelAuditReader()
    try:
      yield reader
    finally:
      reader.close()


def test_login_writes_user_auth_login_and_end(daemon):
  with kernel_audit_records() as audit:
    p = daemon.pop3()
    p.user(harness.MAIL_USER)
    p.pass_(harness.MAIL_PASSWORD)
    p.retr(1)
    p.quit()
    daemon.wait_record("end", user=harness.MAIL_USER)
    ends = audit.wait(1, type=USER_END)
    recs = audit.popguard_records()

  def one(msg_type):
    found = [r for r in recs if r["type"] == msg_type]
    assert len(found) == 1, recs
    return found[0]

  auth, login, end = one(USER_AUTH), one(USER_LOGIN), ends[0]
  assert auth["op"] == "pop3-pass"
  assert login["op"] == "login"
  assert end["op"] == "session-close"
  for r in (auth, login, end):
    assert r["acct"] == harness.MAIL_USER
    assert r["addr"] == "127.0.0.1"
    assert r["terminal"] == "pop3"
    assert r["res"] == "success"


def test_failed_apop_writes_a_failed_user_auth_and_no_login(daemon):
  with kernel_audit_records() as audit:
    p = daemon.pop3()
    try:
      p.apop(harness.MAIL_USER, "Pg7-not-the-secret")
    except Exception:
      pass
    p.close()
    daemon.wait_record("end", user=harness.MAIL_USER)
    found = audit.wait(1, type=USER_AUTH)
    time.sleep(0.3)
    audit.drain()
    recs = audit.popguard_records()
  assert found and found[0]["op"] == "pop3-apop"
  assert found[0]["res"] == "failed"
  assert found[0]["acct"] == harness.MAIL_USER
  assert not [r for r in recs if r["type"] in (USER_LOGIN, USER_END)]


def test_refused_password_writes_a_failed_user_auth(start_daemon):
  d = start_daemon({"auth": {"cleartext": "never"}})
  with kernel_audit_records() as audit:
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
      f = s.makefile("rwb")
      f.readline()
      f.write(b"USER pgtest\r\n")
      f.flush()
      assert f.readline().startswith(b"-ERR")
      f.write(b"QUIT\r\n")
      f.flush()
      f.readline()
    d.wait_record("auth", result="refused")
    found = audit.wait(1, type=USER_AUTH)
  assert found and found[0]["res"] == "failed"


def test_no_records_when_switched_off(start_daemon):
  d = start_daemon({"audit": {"linux_audit": False}})
  with kernel_audit_records() as audit:
    p = d.pop3()
    p.user(harness.MAIL_USER)
    p.pass_(harness.MAIL_PASSWORD)
    p.quit()
    d.wait_record("end", user=harness.MAIL_USER)
    time.sleep(0.5)
    audit.drain()
    assert audit.popguard_records() == []


def test_daemon_warns_when_the_kernel_drops_its_records(start_daemon):
  sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT)
  sock.settimeout(5)
  try:
    before = _audit_enabled(sock)
    if before == 2:
      pytest.skip("audit is locked on; cannot switch it off to test")
    _set_enabled(sock, 0)
    try:
      off = start_daemon()
    finally:
      _set_enabled(sock, before)
  finally:
    sock.close()
  assert "linux audit: the kernel's audit is off" in off.log()
  with audit_switched_on():
    on = start_daemon()
  assert "linux audit" not in on.log()
