"""The clear-text policy, cell by cell: mechanism x link x setting.

Each cell opens one link (plain, STLS, implicit TLS, or plain from a
network that auth.trusted_networks lists or does not list), checks what
CAPA offers there, tries one mechanism (USER/PASS, AUTH PLAIN, APOP) with
the right credentials, and checks both the answer and the event=auth
record the monitor wrote for that very connection (found by its client
port).

One daemon serves every cell of a configuration: daemons start on first
use and stop at the end of the module.
"""

import base64
import hashlib
import itertools
import re

import pytest

import harness
from rawpop import RawClient

# The reasons the monitor gives; a client shows them to its user, so they
# are part of the interface.
NEVER = "passwords are not accepted here; use APOP"
TLS_ONLY = "passwords are accepted only over TLS; use STLS or POP3S"
TLS_OR_NETWORKS = ("passwords are accepted only over TLS from this network; "
                   "use STLS or POP3S")
APOP_NEVER = "APOP is not accepted here"
APOP_TLS_ONLY = "APOP is accepted only over TLS"
USE_APOP = "this account must log in with APOP"

LISTED = ["127.0.0.0/8"]
UNLISTED = ["192.0.2.0/24"]

# name: (cleartext, apop, apop_users_must_use_apop)
SETTINGS = {
    "cleartext-always": ("always", "allow", False),
    "cleartext-never": ("never", "allow", False),
    "cleartext-tls-only": ("tls-only", "allow", False),
    "cleartext-tls-or-networks": ("tls-or-networks", "allow", False),
    "apop-tls-only": ("always", "tls-only", False),
    "apop-never": ("always", "never", False),
    "apop-users-must-use-apop": ("always", "allow", True),
}
LINKS = ["plain", "stls", "implicit", "plain-listed", "plain-unlisted"]
MECHS = ["pass", "plain", "apop"]


def networks_of(link):
  return {"plain-listed": LISTED, "plain-unlisted": UNLISTED}.get(link)


def password_refusal(setting, link):
  """The reason USER/PASS and AUTH PLAIN are refused, or None."""
  cleartext, _, must_apop = SETTINGS[setting]
  tls = link in ("stls", "implicit")
  if cleartext == "never":
    return NEVER
  if cleartext == "tls-only" and not tls:
    return TLS_ONLY
  if cleartext == "tls-or-networks" and not (tls or link == "plain-listed"):
    return TLS_OR_NETWORKS
  # Checked after the link policy: the test user has an APOP secret.
  if must_apop:
    return USE_APOP
  return None


def password_offered(setting, link):
  reason = password_refusal(setting, link)
  return reason is None or reason == USE_APOP


# A refusal whose wording is not pinned down: any reason will do.
ANY_REASON = object()


def apop_refusal(setting, link):
  _, apop, _ = SETTINGS[setting]
  if apop == "never":
    return APOP_NEVER
  if apop == "tls-only" and link == "stls":
    # The link is TLS now, but there is no challenge to answer: the
    # greeting that would carry it went out in clear text, before the
    # handshake, under the policy for a plain link.
    return ANY_REASON
  if apop == "tls-only" and link != "implicit":
    return APOP_TLS_ONLY
  return None


def connect(daemon, link):
  """A client on `link`, greeted; the greeting is returned too."""
  if link == "implicit":
    c = RawClient.connect(daemon.tls_port, tls=True)
  else:
    c = RawClient.connect(daemon.port)
  greeting = c.line()
  assert greeting.startswith("+OK"), greeting
  return c, greeting


def apop_digest(greeting, secret):
  stamp = re.search(r"<[^>]*>", greeting)
  return hashlib.md5(((stamp.group(0) if stamp else "") + secret)
                     .encode()).hexdigest()


def login(c, greeting, mech):
  """The answer to the last command of a login with the right secret."""
  user, password = harness.MAIL_USER, harness.MAIL_PASSWORD
  if mech == "pass":
    answer = c.cmd(f"USER {user}")
    if not answer.startswith("+OK"):
      return answer
    return c.cmd(f"PASS {password}")
  if mech == "plain":
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    return c.cmd(f"AUTH PLAIN {token}")
  return c.cmd(f"APOP {user} {apop_digest(greeting, harness.APOP_SECRET)}")


# -- daemons, one per configuration --------------------------------------------


@pytest.fixture(scope="module")
def daemons(tmp_path_factory, accounts, shared_worker, tls_files):
  harness.fill_maildir(harness.MAIL_USER)
  pa = tmp_path_factory.mktemp("popauth")
  pa.chmod(0o700)
  db, key = harness.make_popauth(pa, {harness.MAIL_USER: harness.APOP_SECRET})
  cert, tls_key = tls_files
  running = {}

  def get(setting, networks):
    name = (setting, tuple(networks or ()))
    if name in running:
      return running[name]
    cleartext, apop, must_apop = SETTINGS[setting]
    workdir = tmp_path_factory.mktemp("matrix")
    port, tls_port = harness.free_port(), harness.free_port()
    sections = harness.merge(
        harness.base_config(port, db, key, shared_worker,
                            workdir / "penalties"),
        {
            "server": {"listen_tls": [f"127.0.0.1:{tls_port}"]},
            "auth": {
                "cleartext": cleartext,
                "apop": apop,
                "apop_users_must_use_apop": must_apop,
                "trusted_networks": networks,
                "penalty_file": str(workdir / "penalties"),
            },
            "tls": {"certificate": str(cert), "private_key": str(tls_key)},
        })
    d = harness.Daemon(workdir, sections)
    running[name] = d
    d.start()
    d.tls_port = tls_port
    return d

  yield get
  errors = []
  for d in running.values():
    try:
      d.stop()
    except AssertionError as e:
      errors.append(str(e))
  assert not errors, "\n".join(errors)


# -- the matrix ----------------------------------------------------------------

def cell(setting, link, mech):
  return pytest.param(setting, link, mech, id=f"{setting}-{link}-{mech}")


CELLS = [cell(*c) for c in itertools.product(SETTINGS, LINKS, MECHS)]


@pytest.mark.parametrize("setting,link,mech", CELLS)
def test_cell(daemons, setting, link, mech):
  daemon = daemons(setting, networks_of(link))
  refusal = (apop_refusal(setting, link) if mech == "apop"
             else password_refusal(setting, link))

  c, greeting = connect(daemon, link)
  try:
    if link == "stls":
      before = c.capa()
      assert "STLS" in before
      assert ("USER" in before) == password_offered(setting, "plain")
      c.stls()
    caps = c.capa()
    assert ("STLS" in caps) == link.startswith("plain"), caps
    offered = password_offered(setting, link)
    assert ("USER" in caps) == offered, caps
    assert ("PLAIN" in caps.get("SASL", [])) == offered, caps

    answer = login(c, greeting, mech)
    if refusal is None:
      assert answer.startswith("+OK"), answer
      assert c.cmd("STAT").startswith("+OK 3 ")
      assert c.cmd("QUIT").startswith("+OK")
    else:
      if refusal is ANY_REASON:
        assert answer.startswith("-ERR [AUTH] "), answer
      else:
        assert answer == f"-ERR [AUTH] {refusal}"
      # Still in AUTHORIZATION: the session goes on after a refusal.
      assert c.cmd("QUIT").startswith("+OK")
  finally:
    c.close()

  rec = daemon.wait_record("auth", client_port=c.port)
  assert len(rec) == 1, rec
  rec = rec[0]
  assert rec["mech"] == mech
  assert rec["tls"] == ("yes" if link in ("stls", "implicit") else "no")
  if refusal is None:
    assert rec["result"] == "ok"
    assert rec["user"] == harness.MAIL_USER
    assert "reason" not in rec
  else:
    assert rec["result"] == "refused"
    if refusal is ANY_REASON:
      assert rec.get("reason"), rec
    else:
      assert rec["reason"] == refusal
  assert harness.MAIL_PASSWORD not in daemon.log()


def test_must_use_apop_leaves_accounts_without_secret_alone(daemons):
  """apop_users_must_use_apop binds only accounts that have a secret."""
  daemon = daemons("apop-users-must-use-apop", None)
  harness.fill_maildir(harness.OTHER_USER)
  c, _ = connect(daemon, "plain")
  try:
    assert c.cmd(f"USER {harness.OTHER_USER}").startswith("+OK")
    assert c.cmd(f"PASS {harness.OTHER_PASSWORD}").startswith("+OK")
    assert c.cmd("QUIT").startswith("+OK")
  finally:
    c.close()
  rec = daemon.wait_record("auth", client_port=c.port)[0]
  assert rec["result"] == "ok" and rec["mech"] == "pass"


def test_no_certificate_means_no_stls_offered(start_daemon):
  daemon = start_daemon({"auth": {"cleartext": "tls-only"}})
  c, _ = connect(daemon, "plain")
  try:
    caps = c.capa()
    assert "STLS" not in caps and "USER" not in caps
    assert "PLAIN" not in caps.get("SASL", [])
    assert c.cmd("QUIT").startswith("+OK")
  finally:
    c.close()
