"""Behind a real HAProxy (send-proxy, -v2, -v2-ssl): audit and policy see the client."""

import poplib
import shutil
import socket
import ssl
import subprocess
import time

import pytest

import harness

HAPROXY = shutil.which("haproxy")
pytestmark = pytest.mark.skipif(HAPROXY is None, reason="haproxy is missing")

CLIENT = "127.0.0.5"  # the client as HAProxy sees it
STRANGER = "127.0.0.6"  # another client, not in trusted_networks
BANNED = b"-ERR [SYS/TEMP] too many failed logins from your address, try again later"


def wait_listening(port, proc, log_path, timeout=10.0):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if proc.poll() is not None:
      raise AssertionError("haproxy exited:\n" + log_path.read_text())
    try:
      socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
      return
    except OSError:
      time.sleep(0.05)
  raise AssertionError("haproxy does not listen:\n" + log_path.read_text())


def make_certificate(directory):
  """A self-signed certificate and key, in one PEM as HAProxy takes it."""
  key = directory / "key.pem"
  cert = directory / "cert.pem"
  harness.run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
              "-keyout", key, "-out", cert, "-days", "1",
              "-subj", "/CN=pgtest.example")
  both = directory / "haproxy.pem"
  both.write_bytes(cert.read_bytes() + key.read_bytes())
  both.chmod(0o600)
  return both


@pytest.fixture
def behind_haproxy(tmp_path, start_daemon):
  """popguard on a proxy listener behind HAProxy.

  Yields a function taking popguard overrides and returning the daemon
  and HAProxy's ports: "v1" (send-proxy), "v2" (send-proxy-v2) and "tls"
  (TLS ended by HAProxy, send-proxy-v2-ssl).
  """
  procs = []

  def start(overrides=None):
    pport = harness.free_port()
    base = {"server": {"proxy_listen": [f"127.0.0.1:{pport}"],
                       "proxy_trusted": ["127.0.0.1/32"]}}
    for section, keys in (overrides or {}).items():
      base.setdefault(section, {}).update(keys)
    daemon = start_daemon(base)

    pem = make_certificate(tmp_path)
    ports = {name: harness.free_port() for name in ("v1", "v2", "tls")}
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(f"""
global
  maxconn 100

defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s

frontend fe_v1
  bind 127.0.0.1:{ports['v1']}
  default_backend be_v1
backend be_v1
  server pg 127.0.0.1:{pport} send-proxy

frontend fe_v2
  bind 127.0.0.1:{ports['v2']}
  default_backend be_v2
backend be_v2
  server pg 127.0.0.1:{pport} send-proxy-v2

frontend fe_tls
  bind 127.0.0.1:{ports['tls']} ssl crt {pem}
  default_backend be_tls
backend be_tls
  server pg 127.0.0.1:{pport} send-proxy-v2-ssl
""")
    log_path = tmp_path / "haproxy.log"
    log = open(log_path, "ab")
    proc = subprocess.Popen([HAPROXY, "-db", "-f", str(cfg)], stdout=log,
                            stderr=log, start_new_session=True)
    procs.append((proc, log))
    for port in ports.values():
      wait_listening(port, proc, log_path)
    return daemon, ports

  yield start
  for proc, log in procs:
    proc.terminate()
    try:
      proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait(timeout=5)
    log.close()


class FromPOP3(poplib.POP3):
  def __init__(self, port, source):
    self._source = source
    super().__init__("127.0.0.1", port, timeout=10)

  def _create_socket(self, timeout):
    return socket.create_connection((self.host, self.port), timeout,
                                    source_address=(self._source, 0))


class FromPOP3SSL(poplib.POP3_SSL):
  def __init__(self, port, source):
    self._source = source
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    super().__init__("127.0.0.1", port, timeout=10, context=context)

  def _create_socket(self, timeout):
    sock = socket.create_connection((self.host, self.port), timeout,
                                    source_address=(self._source, 0))
    return self.context.wrap_socket(sock, server_hostname=self.host)


NETWORKS = {"auth": {"cleartext": "tls-or-networks",
                     "trusted_networks": [f"{CLIENT}/32"]}}
TLS_ONLY = {"auth": {"cleartext": "tls-only"}}


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_client_address_reaches_audit_and_policy(behind_haproxy, version):
  daemon, ports = behind_haproxy(NETWORKS)
  p = FromPOP3(ports[version], CLIENT)
  assert "USER" in p.capa()
  p.user(harness.MAIL_USER)
  assert p.pass_(harness.MAIL_PASSWORD).startswith(b"+OK")
  assert p.stat()[0] == 3
  p.quit()
  login = daemon.wait_record("login", client=CLIENT)[0]
  assert login["proxy"] == "127.0.0.1" and login["tls"] == "no"

  # A client HAProxy saw elsewhere gets the policy of elsewhere.
  q = FromPOP3(ports[version], STRANGER)
  assert "USER" not in q.capa()
  with pytest.raises(poplib.error_proto) as e:
    q.user(harness.MAIL_USER)
  assert e.value.args[0].startswith(b"-ERR [AUTH]")
  q.close()
  daemon.wait_record("auth", result="refused", client=STRANGER,
                     proxy="127.0.0.1")


def test_tls_ended_by_haproxy_counts_when_trusted(behind_haproxy):
  daemon, ports = behind_haproxy({"server": {"proxy_trust_tls": True},
                                  **TLS_ONLY})
  p = FromPOP3SSL(ports["tls"], STRANGER)
  caps = p.capa()
  assert "USER" in caps and "STLS" not in caps
  p.user(harness.MAIL_USER)
  assert p.pass_(harness.MAIL_PASSWORD).startswith(b"+OK")
  _, lines, _ = p.retr(1)
  assert b"\r\n".join(lines) + b"\r\n" == harness.wire(harness.MESSAGES[0][2])
  p.quit()
  login = daemon.wait_record("login", client=STRANGER)[0]
  assert login["tls"] == "proxy"
  assert login["tls_protocol"].startswith("TLSv1")
  # The plain path through the same balancer is still clear text.
  q = FromPOP3(ports["v2"], STRANGER)
  assert "USER" not in q.capa()
  q.quit()


def test_tls_ended_by_haproxy_does_not_count_by_default(behind_haproxy):
  daemon, ports = behind_haproxy(TLS_ONLY)
  p = FromPOP3SSL(ports["tls"], STRANGER)
  assert "USER" not in p.capa()
  with pytest.raises(poplib.error_proto) as e:
    p.user(harness.MAIL_USER)
  assert e.value.args[0].startswith(b"-ERR [AUTH]")
  p.close()
  rec = daemon.wait_record("auth", result="refused", client=STRANGER)[0]
  assert rec["tls"] == "no"


def test_ban_falls_on_the_client_not_the_balancer(behind_haproxy):
  daemon, ports = behind_haproxy({
      **NETWORKS,
      "auth": {**NETWORKS["auth"], "fail_delay_ms": 50, "max_delay_ms": 100,
               "ban_after_failures": 3, "ban_time": 60}})
  p = FromPOP3(ports["v2"], CLIENT)
  for _ in range(3):
    p.user(harness.MAIL_USER)
    with pytest.raises(poplib.error_proto):
      p.pass_("wrong-password")
  p.close()
  with socket.create_connection(("127.0.0.1", ports["v1"]), timeout=10,
                                source_address=(CLIENT, 0)) as s:
    assert s.recv(512) == BANNED + b"\r\n"
  daemon.wait_record("ban", client=CLIENT, proxy="127.0.0.1")
  q = FromPOP3(ports["v2"], STRANGER)
  assert q.getwelcome().startswith(b"+OK")
  q.quit()
