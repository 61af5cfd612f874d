"""The JSON-lines audit file: typed records, chained, checked, tamper shown."""

import hashlib
import json
import os
import re
import signal
import stat
import threading

import pytest

import harness

ZEROS = "0" * 64
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture
def json_daemon(start_daemon, tmp_path):
  path = tmp_path / "log" / "audit.jsonl"
  path.parent.mkdir()
  d = start_daemon({"audit": {"json_file": str(path)}})
  d.json_path = path
  return d


def verify(path):
  r = harness.run(harness.POPGUARD, "--verify-audit", path, check=False)
  return r.returncode, r.stdout.strip()


def lines(path):
  return path.read_text().splitlines()


def login_session(d):
  p = d.pop3()
  p.user(harness.MAIL_USER)
  p.pass_(harness.MAIL_PASSWORD)
  p.retr(1)
  p.quit()


def failed_session(d, user="pg-no-such-user"):
  p = d.pop3()
  p.user(user)
  try:
    p.pass_("Pg7-wrong-Qq3wE")
  except harness.poplib.error_proto:
    pass
  p.close()


def test_file_is_root_only_and_holds_the_same_records(json_daemon):
  d = json_daemon
  login_session(d)
  failed_session(d)
  d.wait_record("end", user="pg-no-such-user")
  d.wait_record("end", user=harness.MAIL_USER)
  st = os.stat(d.json_path)
  assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0

  records = [json.loads(l) for l in lines(d.json_path)]
  # Every syslog record (but the daemon's own start) is in the file, with
  # the same keys and values.
  logged = [r for r in d.records() if r["event"] != "start"]
  in_file = [r for r in records if r["event"] != "start"]
  assert len(in_file) == len(logged)
  for text_rec, rec in zip(logged, in_file):
    for key, value in text_rec.items():
      got = rec[key]
      if isinstance(got, bool):
        got = "yes" if got else "no"
      elif isinstance(got, float):
        got = f"{got:.3f}"
      assert str(got) == value, (key, rec, text_rec)


def test_numbers_are_numbers_and_every_line_is_chained(json_daemon):
  d = json_daemon
  login_session(d)
  d.wait_record("end", user=harness.MAIL_USER)
  raw = lines(d.json_path)
  records = [json.loads(l) for l in raw]
  assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
  assert records[0]["prev"] == ZEROS
  for i in range(1, len(raw)):
    assert records[i]["prev"] == hashlib.sha256(raw[i - 1].encode()).hexdigest()
  for r in records:
    assert RFC3339.fullmatch(r["time"]), r["time"]

  end = next(r for r in records
             if r["event"] == "end" and r["user"] == harness.MAIL_USER)
  assert isinstance(end["client_port"], int)
  assert isinstance(end["server_port"], int)
  assert end["tls"] is False
  assert end["messages"] == 3 and end["retrieved"] == 1
  assert isinstance(end["octets"], int) and isinstance(end["duration"], float)
  login = next(r for r in records if r["event"] == "login")
  assert isinstance(login["uid"], int)
  assert login["session"] == end["session"]


def test_concurrent_sessions_keep_one_chain(json_daemon):
  d = json_daemon
  threads = [threading.Thread(target=failed_session, args=(d, f"pg-c{i}"))
             for i in range(8)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  d.wait_record("end", count=8, reason="disconnect")
  code, out = verify(d.json_path)
  assert code == 0, out
  assert out == f"chain intact: {len(lines(d.json_path))} records"


def test_reload_goes_into_the_file(json_daemon):
  d = json_daemon
  d.signal(signal.SIGHUP)
  d.wait_record("reload", result="ok")
  recs = [json.loads(l) for l in lines(d.json_path)]
  reload = [r for r in recs if r["event"] == "reload"]
  assert reload and reload[0]["config"] == str(d.config_path)
  assert "session" not in reload[0]


def test_hand_edits_are_found(json_daemon):
  d = json_daemon
  login_session(d)
  failed_session(d)
  failed_session(d, "pg-other-guess")
  d.wait_record("end", user="pg-other-guess")
  d.stop()
  path = d.json_path
  original = lines(path)
  n = len(original)
  assert verify(path) == (0, f"chain intact: {n} records")

  def rewrite(new_lines, tail="\n"):
    path.write_text("\n".join(new_lines) + tail)

  # An auditor's usual suspects: a failure made to read as a success...
  k = next(i for i, l in enumerate(original) if '"result":"fail"' in l)
  rewrite(original[:k] + [original[k].replace('"result":"fail"',
                                              '"result":"ok"')]
          + original[k + 1:])
  code, out = verify(path)
  assert code == 1
  assert out.startswith(f"chain broken at line {k + 2}: digest mismatch")

  # ... a record removed ...
  rewrite(original[:k] + original[k + 1:])
  code, out = verify(path)
  assert code == 1
  assert out.startswith(f"chain broken at line {k + 1}: seq gap")

  # ... two swapped ...
  swapped = list(original)
  swapped[1], swapped[2] = swapped[2], swapped[1]
  rewrite(swapped)
  code, out = verify(path)
  assert (code, out.split(":")[0]) == (1, "chain broken at line 2")

  # ... and the last one cut short.
  path.write_text("\n".join(original)[:-20])
  code, out = verify(path)
  assert code == 1
  assert out.startswith(f"chain broken at line {n}:")

  # Put back, the file checks out again.
  rewrite(original)
  assert verify(path) == (0, f"chain intact: {n} records")


def test_verify_reports_a_line_that_is_not_json(tmp_path):
  path = tmp_path / "x.jsonl"
  path.write_text('{"seq":1,"prev":"' + ZEROS + '"}\nnot json\n')
  code, out = verify(path)
  assert (code, out) == (1, "chain broken at line 2: not a JSON object")


def test_daemon_refuses_to_start_when_the_file_cannot_be_written(
    start_daemon, tmp_path):
  missing = tmp_path / "no-such-dir" / "audit.jsonl"
  with pytest.raises(AssertionError) as e:
    start_daemon({"audit": {"json_file": str(missing)}})
  assert "cannot open the audit file" in str(e.value)
