"""PROXY protocol v1/v2 from trusted balancers: audit and policy see the client."""

import poplib
import socket
import time

import pytest

import harness

SIG = b"\r\n\r\n\x00\r\nQUIT\n"
BANNED = b"-ERR [SYS/TEMP] too many failed logins from your address, try again later"


def v1(src, dst="127.0.0.1", sport=40000, dport=110, proto="TCP4"):
  return f"PROXY {proto} {src} {dst} {sport} {dport}\r\n".encode()


def tlv(kind, value):
  return bytes([kind]) + len(value).to_bytes(2, "big") + value


def v2(src=None, sport=40000, family=socket.AF_INET, local=False, tlvs=b""):
  if local:
    return SIG + b"\x20\x00" + (0).to_bytes(2, "big")
  dst = "127.0.0.1" if family == socket.AF_INET else "::1"
  body = (socket.inet_pton(family, src) + socket.inet_pton(family, dst) +
          sport.to_bytes(2, "big") + (110).to_bytes(2, "big") + tlvs)
  fam = b"\x11" if family == socket.AF_INET else b"\x21"
  return SIG + b"\x21" + fam + len(body).to_bytes(2, "big") + body


def ssl_tlv(client_bits=0x01):
  return tlv(0x20, bytes([client_bits]) + b"\x00\x00\x00\x00" +
             tlv(0x21, b"TLSv1.3") + tlv(0x23, b"TLS_AES_128_GCM_SHA256"))


class ProxiedPOP3(poplib.POP3):
  """poplib that sends a PROXY header first, as a balancer would."""

  def __init__(self, port, header, source="127.0.0.1"):
    self._header = header
    self._source = source
    super().__init__("127.0.0.1", port, timeout=10)

  def _create_socket(self, timeout):
    s = socket.create_connection((self.host, self.port), timeout,
                                 source_address=(self._source, 0))
    s.sendall(self._header)
    return s


@pytest.fixture
def proxied(start_daemon):
  """Starts popguard with a proxy listener; yields (daemon, proxy port)."""

  def start(overrides=None):
    port = harness.free_port()
    base = {"server": {"proxy_listen": [f"127.0.0.1:{port}"],
                       "proxy_trusted": ["127.0.0.1/32"]},
            "auth": {"cleartext": "tls-or-networks",
                     "trusted_networks": ["192.0.2.0/24", "2001:db8::/64"]}}
    for section, keys in (overrides or {}).items():
      base.setdefault(section, {}).update(keys)
    return start_daemon(base), port

  return start


def raw_exchange(port, data, source="127.0.0.1", timeout=10):
  """Sends `data`, returns everything until the server closes."""
  with socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                source_address=(source, 0)) as s:
    if data:
      s.sendall(data)
    out = b""
    while True:
      try:
        chunk = s.recv(4096)
      except ConnectionResetError:
        break
      if not chunk:
        break
      out += chunk
    return out


def test_v1_header_names_the_client_for_audit_and_policy(proxied):
  daemon, port = proxied()
  p = ProxiedPOP3(port, v1("192.0.2.10"))
  assert "USER" in p.capa()
  p.user(harness.MAIL_USER)
  assert p.pass_(harness.MAIL_PASSWORD).startswith(b"+OK")
  p.quit()
  rec = daemon.wait_record("connect", client="192.0.2.10")[0]
  assert rec["proxy"] == "127.0.0.1" and rec["client_port"] == "40000"
  login = daemon.wait_record("login", client="192.0.2.10")[0]
  assert login["proxy"] == "127.0.0.1" and login["tls"] == "no"


def test_v1_client_outside_trusted_networks_may_not_send_a_password(proxied):
  daemon, port = proxied()
  p = ProxiedPOP3(port, v1("198.51.100.9"))
  assert "USER" not in p.capa()
  with pytest.raises(poplib.error_proto) as e:
    p.user(harness.MAIL_USER)
  assert e.value.args[0].startswith(b"-ERR [AUTH]")
  p.close()
  daemon.wait_record("auth", result="refused", client="198.51.100.9")


def test_v2_tcp6_header_names_the_client(proxied):
  daemon, port = proxied()
  p = ProxiedPOP3(port, v2("2001:db8::5", family=socket.AF_INET6))
  p.user(harness.MAIL_USER)
  assert p.pass_(harness.MAIL_PASSWORD).startswith(b"+OK")
  p.quit()
  daemon.wait_record("login", client="2001:db8::5", proxy="127.0.0.1")


def test_v2_tcp4_outside_trusted_networks_is_refused_clear_text(proxied):
  daemon, port = proxied()
  p = ProxiedPOP3(port, v2("203.0.113.20"))
  assert "USER" not in p.capa()
  p.quit()
  daemon.wait_record("connect", client="203.0.113.20", proxy="127.0.0.1")


def test_v2_local_is_served_as_the_balancer_itself(proxied):
  daemon, port = proxied()
  p = ProxiedPOP3(port, v2(local=True))
  assert p.getwelcome().startswith(b"+OK")
  p.quit()
  recs = [r for r in daemon.records("connect") if "proxy" not in r]
  assert len(recs) >= 2  # the start-up probe and this one
  assert recs[-1]["client"] == "127.0.0.1"


def test_bytes_after_the_header_belong_to_the_client(proxied):
  _, port = proxied()
  out = raw_exchange(port, v1("192.0.2.10") + b"CAPA\r\nQUIT\r\n")
  lines = out.split(b"\r\n")
  assert lines[0].startswith(b"+OK")
  assert lines[1] == b"+OK capability list follows"
  assert b"USER" in lines and lines[-2].startswith(b"+OK")


@pytest.mark.parametrize("header", [
    b"PROXY TCP4 192.0.2.10 127.0.0.1 40000\r\n",
    b"PROXY TCP4 192.0.2.010 127.0.0.1 40000 110\r\n",
    b"PROXY TCP6 192.0.2.10 ::1 40000 110\r\n",
    b"PROXY TCP4 192.0.2.10 127.0.0.1 40000 110\n",
    b"PROXY TCP4 192.0.2.10 127.0.0.1 40000 110 " + b"x" * 80 + b"\r\n",
    b"CAPA\r\n",
    SIG + b"\x22\x11\x00\x0c" + b"\x00" * 12,
    SIG + b"\x21\x12\x00\x0c" + b"\x00" * 12,
    SIG + b"\x21\x11\x00\x0b" + b"\x00" * 11,
    SIG + b"\x21\x11\x00\x0f" + b"\x00" * 12 + b"\x20\x00\x05",
])
def test_malformed_header_closes_without_a_greeting(proxied, header):
  daemon, port = proxied()
  assert raw_exchange(port, header) == b""
  daemon.wait_record("refused", reason="proxy-header", client="127.0.0.1")


def test_untrusted_source_is_closed_unread(proxied):
  daemon, port = proxied()
  assert raw_exchange(port, v1("192.0.2.10"), source="127.0.0.2") == b""
  daemon.wait_record("refused", reason="proxy-untrusted", client="127.0.0.2")
  assert not daemon.records("connect") or all(
      r.get("client") != "192.0.2.10" for r in daemon.records("connect"))


def test_silent_balancer_is_dropped_after_the_header_timeout(proxied):
  daemon, port = proxied()
  start = time.monotonic()
  assert raw_exchange(port, b"", timeout=15) == b""
  took = time.monotonic() - start
  assert 4.0 <= took < 10.0
  rec = daemon.wait_record("refused", reason="proxy-header")[0]
  assert rec["detail"] == "no PROXY header in time"


def test_ssl_tlv_is_not_tls_unless_the_admin_trusts_it(proxied):
  daemon, port = proxied({"auth": {"cleartext": "tls-only",
                                   "trusted_networks": None}})
  p = ProxiedPOP3(port, v2("198.51.100.9", tlvs=ssl_tlv()))
  assert "USER" not in p.capa()
  p.quit()
  rec = daemon.wait_record("connect", client="198.51.100.9")[0]
  assert rec["tls"] == "no"


def test_ssl_tlv_counts_as_tls_when_trusted(proxied):
  daemon, port = proxied({"server": {"proxy_trust_tls": True},
                          "auth": {"cleartext": "tls-only",
                                   "trusted_networks": None}})
  p = ProxiedPOP3(port, v2("198.51.100.9", tlvs=ssl_tlv()))
  caps = p.capa()
  assert "USER" in caps and "STLS" not in caps
  p.user(harness.MAIL_USER)
  assert p.pass_(harness.MAIL_PASSWORD).startswith(b"+OK")
  p.quit()
  login = daemon.wait_record("login", client="198.51.100.9")[0]
  assert login["tls"] == "proxy"
  assert login["tls_protocol"] == "TLSv1.3"
  # Without the SSL bit the same balancer's word is not TLS.
  p = ProxiedPOP3(port, v2("198.51.100.9", tlvs=ssl_tlv(client_bits=0x06)))
  assert "USER" not in p.capa()
  p.quit()


def test_penalties_follow_the_carried_address(proxied):
  daemon, port = proxied({"auth": {"fail_delay_ms": 50, "max_delay_ms": 100,
                                   "ban_after_failures": 3, "ban_time": 60}})
  p = ProxiedPOP3(port, v1("192.0.2.66"))
  for _ in range(3):
    p.user(harness.MAIL_USER)
    with pytest.raises(poplib.error_proto):
      p.pass_("wrong-password")
  p.close()
  assert raw_exchange(port, v1("192.0.2.66", sport=40001)) == BANNED + b"\r\n"
  daemon.wait_record("ban", client="192.0.2.66", proxy="127.0.0.1")
  # Neither another client behind the balancer nor the balancer itself.
  q = ProxiedPOP3(port, v1("192.0.2.67"))
  assert q.getwelcome().startswith(b"+OK")
  q.quit()
  r = daemon.pop3()
  assert r.getwelcome().startswith(b"+OK")
  r.quit()
