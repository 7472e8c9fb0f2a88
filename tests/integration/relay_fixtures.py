"""Helpers for the in-line delivery tests (test_relay_*.py): backstop configs with short backend
timeouts, fake backends and smtp-sink as peers (peers.py), one-message SMTP transactions.
Reuses conftest.py's backstop_factory."""
import subprocess
import time

import pytest

from fake_backend import FakeBackend
# process and port helpers and smtp-sink live in peers.py; the names stay importable from here
# for the tests, postfix_fixture.py and bench/relay_throughput.py
from peers import (SmtpSink, free_port, made_by, proc_fds, proc_rss_kb, smtp_sink,  # noqa: F401
                   wait_listening)


def relay_gateway(**over):
    """[gateway] keys for relay tests: short backend timeouts so stalls end quickly."""
    gw = {
        "backend_connect_timeout": "1s",
        "backend_command_timeout": "1s",
        "backend_data_timeout": "2s",
        "backend_retry_after": "0s",
        # backend sessions end with their client session, so that tests can wait for the
        # backend to be let go; test_relay_pool.py covers keeping them
        "backend_idle_timeout": "0s",
        "max_connections_per_ip": 10000,
        "max_connections": 10000,
    }
    gw.update(over)
    return gw


def message(subject="relay test", body_lines=None, extra_headers=()):
    """An RFC 5322 message with CRLF line ends, as bytes (without the final dot)."""
    hdr = [
        "From: Sender <sender@client.test>",
        "To: <user@example.test>",
        f"Subject: {subject}",
        "Date: Mon, 01 Jan 2024 00:00:00 +0000",
        f"Message-ID: <{abs(hash(subject))}.{time.monotonic_ns()}@client.test>",
        *extra_headers,
    ]
    body = body_lines if body_lines is not None else [
        "Hello,", "", ".a line that starts with a dot", "..two dots", ".", " .", "last line"]
    return ("\r\n".join(hdr) + "\r\n\r\n" + "\r\n".join(body) + "\r\n").encode()


def stuff(content):
    """Dot-stuff CRLF content for the wire."""
    lines = content.split(b"\r\n")
    return b"\r\n".join(b"." + l if l.startswith(b".") else l for l in lines)


class Outcome:
    """What the client saw in one transaction."""

    def __init__(self):
        self.mail = self.data = self.final = None
        self.rcpts = []
        self.closed = False  # the connection closed with no reply to the final dot

    @property
    def delivered(self):
        return self.final is not None and self.final.code == 250

    def __repr__(self):
        return (f"Outcome(mail={self.mail!r}, rcpts={self.rcpts!r}, data={self.data!r}, final={self.final!r}"
                f"{', closed' if self.closed else ''})")


def transaction(c, rcpts, content=None, mail_from="sender@client.test", mail_params=""):
    """MAIL, RCPTs, and DATA+content if any recipient was accepted. Returns an Outcome."""
    o = Outcome()
    o.mail = c.cmd(f"MAIL FROM:<{mail_from}>{mail_params}")
    if o.mail.code != 250:
        return o
    for r in ([rcpts] if isinstance(rcpts, str) else rcpts):
        o.rcpts.append(c.cmd(f"RCPT TO:<{r}>"))
    if not any(r.code == 250 for r in o.rcpts):
        c.cmd("RSET")
        return o
    o.data = c.cmd("DATA")
    if o.data.code != 354:
        return o
    content = message() if content is None else content
    c.send(stuff(content) + b".\r\n")
    try:
        o.final = c.reply()
    except ConnectionError:
        if c.buf:
            raise
        o.closed = True  # outcome unknown: the backend had the dot and never answered
    return o


def deliver(b, rcpts, content=None, **kw):
    """One session: EHLO, one transaction, QUIT."""
    with b.connect() as c:
        c.ehlo()
        o = transaction(c, rcpts, content, **kw)
        try:
            c.cmd("QUIT")
        except (ConnectionError, OSError):
            pass
        return o


# A session with one accepted recipient that has just got DATA's 354 (the caller sends content).
def open_data(b):
    c = b.connect(timeout=30)
    c.ehlo()
    assert c.cmd("MAIL FROM:<sender@client.test>").code == 250
    assert c.cmd("RCPT TO:<user@example.test>").code == 250
    assert c.cmd("DATA").code == 354
    return c


@pytest.fixture
def fakes():
    """fakes(**kw) -> a started FakeBackend; all are stopped at teardown."""
    with made_by(FakeBackend) as make:
        yield make


@pytest.fixture(scope="session")
def ip_tls_files(tmp_path_factory):
    """A CA and a backend certificate for IP 127.0.0.1 signed by it: (ca, cert, key)."""
    d = tmp_path_factory.mktemp("iptls")
    ca, ca_key = d / "ca.pem", d / "ca.key"
    cert, key, csr = d / "cert.pem", d / "key.pem", d / "req.csr"
    ext = d / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:backend.pf.test\n")

    def run(*a):
        subprocess.run(["openssl", *map(str, a)], check=True, capture_output=True, timeout=30)
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-days", "2", "-subj", "/CN=backstop test CA", "-keyout", ca_key, "-out", ca)
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", csr)
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
        "-extfile", ext, "-out", cert)
    return ca, cert, key


@pytest.fixture
def small_asan_quarantine(monkeypatch):
    """Under ASan, freed memory sits in a 256 MB quarantine and shows as RSS: keep it small for
    the tests that measure RSS (no effect on a normal build)."""
    monkeypatch.setenv("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:quarantine_size_mb=1:"
                       "thread_local_quarantine_size_kb=64")
