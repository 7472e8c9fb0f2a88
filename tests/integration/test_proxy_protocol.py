"""PROXY protocol (proxy_protocol_from): HAProxy from Debian in front of backstop with send-proxy
and send-proxy-v2, started privately on loopback random ports; clients connect to HAProxy from
127.0.0.2 so the address backstop must log, admit and write in Received: differs from the
balancer's (127.0.0.1). Raw sockets check the rest: a trusted address without a header, a
malformed or truncated header, a v2 LOCAL header, an untrusted client that sends one.
"""
import shutil
import socket
import struct
import subprocess

import pytest

from peers import free_port, made_by, wait_listening, read_until_closed

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


class HAProxy:
    """haproxy -db with one TCP frontend per mode, all to one backstop listener."""

    def __init__(self, tmp_path, target_port, modes=("send-proxy", "send-proxy-v2")):
        self.ports = {m: free_port() for m in modes}
        lines = ["global", "  maxconn 200", "defaults", "  mode tcp", "  timeout connect 5s",
                 "  timeout client 30s", "  timeout server 30s"]
        for i, (mode, port) in enumerate(self.ports.items()):
            lines += [f"frontend f{i}", f"  bind 127.0.0.1:{port}", f"  default_backend b{i}",
                      f"backend b{i}", f"  server s{i} 127.0.0.1:{target_port} source 127.0.0.1 {mode}"]
        self.conf = tmp_path / "haproxy.cfg"
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", str(self.conf)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for port in self.ports.values():
            wait_listening(port, proc=self.proc)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def connect_from(src, port, timeout=5):
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def read_reply(s):
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.decode()


def smtp_message(s, rcpt="user@example.test"):
    assert read_reply(s).startswith("220")
    for line, code in ((b"EHLO client.test", "250"), (b"MAIL FROM:<a@client.test>", "250"),
                       (f"RCPT TO:<{rcpt}>".encode(), "250"), (b"DATA", "354"),
                       (b"Subject: x\r\n\r\nhi\r\n.", "250"), (b"QUIT", "221")):
        s.sendall(line + b"\r\n")
        r = read_reply(s)
        while r and r[3:4] == "-":  # multi-line EHLO reply
            r = r.split("\r\n", 1)[1] if r.count("\r\n") > 1 else read_reply(s)
        assert r.startswith(code), (line, r)


@pytest.fixture
def proxied(backstop_factory):
    return backstop_factory(gateway={"proxy_protocol_from": "127.0.0.1/32, 2001:db8::/32",
                                     "proxy_protocol_timeout": "1s"})


@pytest.mark.parametrize("mode", ["send-proxy", "send-proxy-v2"])
def test_haproxy_client_address_is_the_real_one(proxied, backend, tmp_path, mode):
    with made_by(lambda: HAProxy(tmp_path, proxied.port, modes=(mode,)), stop=lambda h: h.stop()) as make:
        hp = make()
        mark = proxied.mark()
        with connect_from("127.0.0.2", hp.ports[mode]) as s:
            smtp_message(s)
        proxied.wait_log(r"connect client=127\.0\.0\.2\b", start=mark)
        proxied.wait_log(r"rcpt client=127\.0\.0\.2 .*code=250", start=mark)
        # (HAProxy's own client 127.0.0.1 is the port probe of wait_listening: it says nothing)
        assert not [l for l in proxied.log[mark:] if " mail client=127.0.0.1 " in l]
    data = backend.messages[-1]["data"]
    assert b"127.0.0.2" in data.split(b"\r\n\r\n", 1)[0], data  # Received: names the real client


def test_trusted_address_without_header_is_closed(proxied):
    mark = proxied.mark()
    with connect_from("127.0.0.1", proxied.port) as s:
        s.sendall(b"EHLO client.test\r\n")
        closed, data = read_until_closed(s, 5)
        assert closed and data == b"", data  # no banner, nothing said
    proxied.wait_log(r"proxy=127\.0\.0\.1 PROXY protocol: malformed or missing header", start=mark)


def test_trusted_address_silent_is_closed_at_the_timeout(proxied):
    mark = proxied.mark()
    with connect_from("127.0.0.1", proxied.port) as s:
        closed, data = read_until_closed(s, 5)
        assert closed and data == b""
    proxied.wait_log(r"PROXY protocol: no header in time", start=mark)


@pytest.mark.parametrize("header", [
    b"PROXY TCP4 300.0.0.1 127.0.0.1 1000 25\r\n",
    b"PROXY TCP4 192.0.2.1 127.0.0.1 1000\r\n",
    b"PROXY TCP4 192.0.2.1 127.0.0.1 1000 25\n",
    b"PROXY " + b"A" * 120 + b"\r\n",
    V2_SIG + b"\x21\x11\x00\x04\x01\x02\x03\x04",
    V2_SIG[:6] + b"X" * 10,
])
def test_malformed_header_is_closed(proxied, header):
    mark = proxied.mark()
    with connect_from("127.0.0.1", proxied.port) as s:
        s.sendall(header)
        closed, data = read_until_closed(s, 5)
        assert closed and data == b"", data
    proxied.wait_log(r"PROXY protocol: (malformed|no header|connection closed)", start=mark)


def test_header_in_pieces_then_smtp(proxied):
    """A header that arrives in several segments, the client's first command right behind it."""
    mark = proxied.mark()
    with connect_from("127.0.0.1", proxied.port) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in (b"PROXY TC", b"P4 192.0.2.55 127.0.0.1 4", b"0000 25\r"):
            s.sendall(piece)
        s.sendall(b"\n")
        assert read_reply(s).startswith("220")
        s.sendall(b"NOOP\r\n")
        assert read_reply(s).startswith("250")
    proxied.wait_log(r"connect client=192\.0\.2\.55\b", start=mark)


def test_v2_ipv6_and_local(proxied):
    mark = proxied.mark()
    addrs = socket.inet_pton(socket.AF_INET6, "2001:db8::77") + socket.inet_pton(socket.AF_INET6, "::1")
    with connect_from("127.0.0.1", proxied.port) as s:
        s.sendall(V2_SIG + b"\x21\x21" + struct.pack("!H", 36) + addrs + struct.pack("!HH", 5000, 25))
        assert read_reply(s).startswith("220")
    proxied.wait_log(r"connect client=2001:db8::77\b", start=mark)
    with connect_from("127.0.0.1", proxied.port) as s:  # LOCAL: a health check, the real peer
        s.sendall(V2_SIG + b"\x20\x00\x00\x00")
        assert read_reply(s).startswith("220")
    proxied.wait_log(r"connect client=127\.0\.0\.1\b", start=mark)


def test_untrusted_client_header_is_just_a_bad_command(proxied):
    mark = proxied.mark()
    with connect_from("127.0.0.3", proxied.port) as s:
        assert read_reply(s).startswith("220")
        s.sendall(b"PROXY TCP4 192.0.2.1 127.0.0.1 1000 25\r\n")
        r = read_reply(s)
        assert r[:1] == "5", r
        s.sendall(b"NOOP\r\n")
        assert read_reply(s).startswith("250")
    proxied.wait_log(r"connect client=127\.0\.0\.3\b", start=mark)
    assert not [l for l in proxied.log[mark:] if "client=192.0.2.1" in l]


def test_bad_cidr_refused_by_check_config(backstop_factory, tmp_path):
    from conftest import run_cli
    conf = tmp_path / "bad.conf"
    conf.write_text(backstop_factory.render(gateway={"proxy_protocol_from": "10.0.0.0/33"}))
    r = run_cli("check-config", "-c", conf)
    assert r.returncode != 0 and "proxy_protocol_from" in (r.stdout + r.stderr), r
