"""Streaming: a 100 MB message passes through backstop to the backend intact (size and SHA-256
of the content behind backstop's Received: header), while backstop's VmRSS grows by less than
10 MB; a backend that stops reading holds the client back (backpressure) without buffering the
message, and the stalled transfer ends in a 4xx, never a 250."""
import hashlib
import threading
import time

import pytest

from relay_fixtures import (SmtpSink, fakes, message, proc_rss_kb, relay_gateway,  # noqa: F401
                            small_asan_quarantine, smtp_sink)

pytestmark = pytest.mark.usefixtures("small_asan_quarantine")

SIZE = 100 * 1024 * 1024
LINE = (b"0123456789abcdefghijklmnopqrstuvwxyz" * 27)[:998] + b"\r\n"  # 1000 octets


class RssSampler:
    """Peak VmRSS of pid while running (a measurement, sampled every 20 ms)."""

    def __init__(self, pid):
        self.pid, self.peak = pid, proc_rss_kb(pid)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.wait(0.02):
            try:
                self.peak = max(self.peak, proc_rss_kb(self.pid))
            except (OSError, AssertionError):
                return

    def stop(self):
        self._stop.set()
        self._t.join(5)
        return self.peak


def send_big(c, size, sha):
    """Send size octets of content (1000-octet lines after a small header) and the final dot."""
    head = message("big", [])
    c.send(head)
    sha.update(head)
    sent = len(head)
    block = LINE * 1024
    while sent + len(block) <= size:
        c.send(block)
        sha.update(block)
        sent += len(block)
    while sent + len(LINE) <= size:
        c.send(LINE)
        sha.update(LINE)
        sent += len(LINE)
    c.send(b".\r\n")
    return sent


def big_backstop(backstop_factory, addr, **gw):
    return backstop_factory(
        gateway=relay_gateway(max_message_size="200M", backend_data_timeout="60s",
                              backend_command_timeout="10s", data_timeout="60s", **gw),
        domains={"example.test": {"deliver": addr}})


def warm_up(b):
    with b.connect() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<sender@client.test>")
        assert c.cmd("RCPT TO:<user@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(message("warm", ["w" * 998] * 2000) + b".\r\n")
        assert c.reply().code == 250


def test_100mb_through_to_counting_backend(backstop_factory, fakes):
    fb = fakes(store=False)
    b = big_backstop(backstop_factory, fb.addr)
    warm_up(b)
    rss0 = proc_rss_kb(b.pid)
    sampler = RssSampler(b.pid)
    sha = hashlib.sha256()
    t0 = time.monotonic()
    with b.connect(timeout=120) as c:
        c.ehlo()
        c.cmd("MAIL FROM:<sender@client.test> SIZE=%d" % SIZE)
        assert c.cmd("RCPT TO:<user@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        sent = send_big(c, SIZE, sha)
        final = c.reply()
        c.cmd("QUIT")
    secs = time.monotonic() - t0
    peak = sampler.stop()
    assert final.code == 250, final
    m = fb.messages[-1]
    assert m.acked and m.size == sent, (m.size, sent)
    assert m.sha256.hexdigest() == sha.hexdigest(), "content changed on the way"
    assert m.received.startswith(b"Received: ")
    growth = peak - rss0
    print(f"100 MB in {secs:.1f} s ({sent / secs / 1e6:.0f} MB/s); VmRSS {rss0} kB -> peak {peak} kB")
    assert growth < 10 * 1024, f"VmRSS grew by {growth} kB while streaming 100 MB"


def test_100mb_to_smtp_sink(backstop_factory, smtp_sink):
    sink = smtp_sink()
    b = big_backstop(backstop_factory, sink.addr)
    warm_up(b)
    rss0 = proc_rss_kb(b.pid)
    sampler = RssSampler(b.pid)
    with b.connect(timeout=120) as c:
        c.ehlo()
        c.cmd("MAIL FROM:<sender@client.test>")
        assert c.cmd("RCPT TO:<user@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        send_big(c, SIZE, hashlib.sha256())
        final = c.reply()
    peak = sampler.stop()
    assert final.code == 250, final
    assert peak - rss0 < 10 * 1024, f"VmRSS grew by {peak - rss0} kB while streaming 100 MB"


def test_backend_that_stops_reading_holds_client_back(backstop_factory, fakes):
    """The backend freezes after 1 MB: backstop stops reading the client (does not buffer the
    rest), memory stays flat, and once the backend data timeout fires the client can finish and
    gets 451 4.4.2, never 250."""
    fb = fakes(faults={"body": "freeze"}, body_fault_after=1024 * 1024, store=False)
    b = backstop_factory(
        gateway=relay_gateway(max_message_size="200M", backend_data_timeout="2s",
                              backend_command_timeout="2s", data_timeout="60s"),
        domains={"example.test": {"deliver": fb.addr}})
    warm_rss = proc_rss_kb(b.pid)
    sampler = RssSampler(b.pid)
    with b.connect(timeout=30) as c:
        c.ehlo()
        c.cmd("MAIL FROM:<sender@client.test>")
        assert c.cmd("RCPT TO:<user@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(message("frozen", []))
        c.sock.settimeout(0.5)
        sent, block, blocked = 0, LINE * 64, False
        while sent < 64 * 1024 * 1024:
            try:
                c.sock.sendall(block)
                sent += len(block)
            except TimeoutError:
                blocked = True  # backstop stopped reading: backpressure reached the client
                break
        assert blocked, f"backstop kept reading {sent} octets for a backend that stopped"
        # the backend data timeout (2 s) ends the backend side; the client may then finish
        c.sock.settimeout(20)
        t0 = time.monotonic()
        c.sock.sendall(LINE * 256 + b".\r\n")
        final = c.reply()
        waited = time.monotonic() - t0
        peak = sampler.stop()
        assert (final.code, final.enhanced) == (451, "4.4.2"), final
        assert waited < 15, f"the final reply took {waited:.1f}s"
    assert peak - warm_rss < 10 * 1024, f"VmRSS grew by {peak - warm_rss} kB"
    assert not fb.acked
