"""Every RFC 1939/2449 command through Python's poplib, and its errors."""

import poplib

import pytest

import harness


def err(call, *args):
  """The -ERR line a command answered with."""
  with pytest.raises(poplib.error_proto) as e:
    call(*args)
  line = e.value.args[0]
  assert line.startswith(b"-ERR"), line
  return line


def test_user_pass_logs_in_and_stat_counts_messages(daemon):
  p = daemon.login()
  count, size = p.stat()
  assert count == len(harness.MESSAGES)
  # Every message but the dotted one has one possible size; for that one
  # RFC 1939 leaves open whether the stuffing dots count.
  bodies = [harness.wire(m) for m in harness.message_bodies()]
  exact = sum(len(b) for b in bodies)
  assert exact <= size <= exact + 3
  assert p.quit().startswith(b"+OK")


def test_greeting_carries_an_apop_challenge(daemon):
  p = daemon.pop3()
  welcome = p.getwelcome()
  assert welcome.startswith(b"+OK")
  assert welcome.rstrip().endswith(b"@" + harness.HOSTNAME.encode() + b">")
  p.quit()


def test_list_gives_each_size(daemon):
  p = daemon.login()
  resp, lines, _ = p.list()
  assert resp.startswith(b"+OK")
  sizes = dict(tuple(int(x) for x in line.split()) for line in lines)
  assert sorted(sizes) == [1, 2, 3]
  wires = [harness.wire(m) for m in harness.message_bodies()]
  assert sizes[1] == len(wires[0])
  assert sizes[3] == len(wires[2])
  assert p.list(1).split() == [b"+OK", b"1", str(sizes[1]).encode()]
  err(p.list, 4)
  p.quit()


def test_retr_returns_each_message_unstuffed(daemon):
  p = daemon.login()
  for n, body in enumerate(harness.message_bodies(), start=1):
    resp, lines, _ = p.retr(n)
    assert resp.startswith(b"+OK")
    assert b"\r\n".join(lines) + b"\r\n" == harness.wire(body)
  p.quit()


def test_top_returns_headers_and_requested_lines(daemon):
  p = daemon.login()
  header = harness.MESSAGES[0][2].split(b"\n\n")[0].split(b"\n")
  _, lines, _ = p.top(1, 0)
  assert lines == header + [b""]
  _, lines, _ = p.top(1, 1)
  assert lines == header + [b"", b"Hello."]
  _, lines, _ = p.top(3, 2)
  assert lines[-2:] == [b"line 00000 of a long message, padded to width",
                        b"line 00001 of a long message, padded to width"]
  err(p.top, 9, 0)
  p.quit()


def test_uidl_is_unique_and_stable_across_sessions(daemon):
  p = daemon.login()
  _, lines, _ = p.uidl()
  first = dict(line.split() for line in lines)
  assert len(first) == 3 and len(set(first.values())) == 3
  for uid in first.values():
    # RFC 1939: 1 to 70 characters in the range 0x21 to 0x7E.
    assert 1 <= len(uid) <= 70 and all(0x21 <= c <= 0x7E for c in uid)
  assert p.uidl(2).split()[2] == first[b"2"]
  p.dele(1)
  p.quit()

  p = daemon.login()
  _, lines, _ = p.uidl()
  second = dict(line.split() for line in lines)
  assert sorted(second.values()) == sorted([first[b"2"], first[b"3"]])
  p.quit()


def test_dele_then_quit_removes_the_message(daemon, maildir):
  p = daemon.login()
  assert p.dele(2).startswith(b"+OK")
  count, _ = p.stat()
  assert count == 2  # deleted messages leave STAT at once
  err(p.retr, 2)     # a deleted message cannot be read
  err(p.dele, 2)     # nor deleted twice
  err(p.list, 2)
  p.quit()
  left = harness.maildir_files(maildir)
  expected = harness.message_bodies()
  assert left == [expected[0], expected[2]]


def test_rset_undeletes(daemon, maildir):
  p = daemon.login()
  p.dele(1)
  p.dele(3)
  assert p.rset().startswith(b"+OK")
  assert p.stat()[0] == 3
  p.quit()
  assert len(harness.maildir_files(maildir)) == 3


def test_noop_answers_ok(daemon):
  p = daemon.login()
  assert p.noop().startswith(b"+OK")
  p.quit()


def test_capa_lists_the_extensions(daemon):
  p = daemon.pop3()
  caps = p.capa()
  for name in ("USER", "UIDL", "TOP", "PIPELINING", "RESP-CODES"):
    assert name in caps, caps
  p.user(harness.MAIL_USER)
  p.pass_(harness.MAIL_PASSWORD)
  caps = p.capa()
  assert "UIDL" in caps and "TOP" in caps
  p.quit()


def test_rejects_missing_and_malformed_message_numbers(daemon):
  p = daemon.login()
  err(p.retr, 99)
  err(p.retr, 0)
  err(p.dele, 99)
  err(p._shortcmd, "RETR abc")
  err(p._shortcmd, "RETR -1")
  err(p._shortcmd, "RETR")
  assert p.stat()[0] == 3
  p.quit()


def test_rejects_transaction_commands_before_login(daemon):
  p = daemon.pop3()
  for command in ("STAT", "LIST", "RETR 1", "DELE 1", "RSET", "TOP 1 0",
                  "UIDL"):
    err(p._shortcmd, command)
  assert p.user(harness.MAIL_USER).startswith(b"+OK")
  assert p.pass_(harness.MAIL_PASSWORD).startswith(b"+OK")
  p.quit()


def test_rejects_pass_before_user(daemon):
  p = daemon.pop3()
  err(p.pass_, harness.MAIL_PASSWORD)
  p.user(harness.MAIL_USER)
  p.pass_(harness.MAIL_PASSWORD)
  assert p.stat()[0] == 3
  p.quit()


def test_rejects_auth_commands_after_login(daemon):
  p = daemon.login()
  err(p.user, harness.MAIL_USER)
  err(p.pass_, harness.MAIL_PASSWORD)
  p.quit()


def test_unknown_command_gets_err_and_session_goes_on(daemon):
  p = daemon.pop3()
  err(p._shortcmd, "XYZZY")
  p.user(harness.MAIL_USER)
  p.pass_(harness.MAIL_PASSWORD)
  err(p._shortcmd, "XYZZY")
  assert p.stat()[0] == 3
  p.quit()


def test_overlong_line_gets_err_and_session_goes_on(daemon):
  p = daemon.pop3()
  err(p._shortcmd, "NOOP " + "x" * 4000)
  p.user(harness.MAIL_USER)
  p.pass_(harness.MAIL_PASSWORD)
  err(p._shortcmd, "NOOP " + "y" * 4000)
  assert p.noop().startswith(b"+OK")
  assert p.stat()[0] == 3
  p.quit()


def test_commands_are_case_insensitive(daemon):
  p = daemon.pop3()
  p._shortcmd(f"user {harness.MAIL_USER}")
  p._shortcmd(f"pass {harness.MAIL_PASSWORD}")
  assert p._shortcmd("stat").split()[1] == b"3"
  p._shortcmd("quit")
