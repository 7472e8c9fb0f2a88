"""Resources held by backstop across many sessions, good and bad: after 2,000 mixed sessions
(complete transactions, hostile streams, abrupt disconnects while the backend decides a RCPT or
takes the message) the daemon's open descriptors are back at their baseline and its resident
memory stops growing (1,000 sessions more add less than a few MB).

Idle backend sessions kept for reuse (backend_idle_timeout) are not a leak, but they are open
descriptors: the test shortens the idle time and waits (for a condition, with a deadline) until
backstop holds no connection to either backend before it counts, so it also checks that the
pool lets go of them.

The sanitizer's quarantine is kept small here so that RSS measures the program, not ASan."""
import random
import time

import pytest

from hostile_support import (hostile_domains, hostile_gateway, make_seed, proc_connections_to,  # noqa: F401
                             proc_fds, proc_rss_kb, run_batches, script_for, sink, slow_sink,
                             transaction, wait_sessions_closed)

ROUND = 1000
FD_TOLERANCE = 4
RSS_GROWTH_MB = 4
IDLE_TIMEOUT_S = 1


@pytest.fixture
def small_quarantine(monkeypatch):
    monkeypatch.setenv("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1:quarantine_size_mb=4")


def good_script(rng):
    body = b"Subject: r\r\n\r\n" + b"line\r\n" * rng.randrange(1, 200)
    return ("good", [("send", b"EHLO client.test\r\nMAIL FROM:<a@client.test>\r\n"
                      b"RCPT TO:<u@example.test>\r\nDATA\r\n"), ("read_until", b"354 ", 5.0),
                     ("send", body + b".\r\nQUIT\r\n"), ("read_until", b"221 ", 5.0), ("close",)])


def pending_script(rng):
    """Gone while the backend decides a RCPT, or while it takes the message."""
    if rng.random() < 0.5:
        return ("rcpt_pending", [("send", b"EHLO c\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<x@slow.test>\r\n"),
                                 rng.choice([("close",), ("rst",)])])
    return ("data_cut", [("send", b"EHLO c\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<x@example.test>\r\nDATA\r\n"),
                         ("read_until", b"354 ", 5.0), ("send", b"Subject: cut\r\n\r\n" + b"z" * rng.randrange(0, 50000)),
                         rng.choice([("close",), ("rst",)])])


def mixed_round(rng, n):
    scripts = []
    for _ in range(n):
        r = rng.random()
        sub = random.Random(rng.randrange(1 << 62))
        if r < 0.3:
            scripts.append(good_script(sub))
        elif r < 0.45:
            scripts.append(pending_script(sub))
        else:
            scripts.append(script_for(sub))
    return scripts


def wait_backends_released(b, ports, timeout=IDLE_TIMEOUT_S + 10):
    """backstop holds no connection to the backends: every session is over and the pool of idle
    backend sessions has closed what it kept. /proc offers nothing to wait on, so this polls."""
    deadline = time.monotonic() + timeout
    while (held := proc_connections_to(b.pid, ports)) > 0:
        assert time.monotonic() < deadline, f"{held} backend connections still open after {timeout}s"
        time.sleep(0.05)


def test_fds_and_memory_stable_over_2000_sessions(small_quarantine, backstop_factory, sink, slow_sink):
    seed = make_seed("resources")
    rng = random.Random(seed)
    b = backstop_factory(gateway=hostile_gateway(backend_idle_timeout=f"{IDLE_TIMEOUT_S}s"),
                         domains=hostile_domains(sink, slow_sink))
    backend_ports = {sink.port, slow_sink.port}
    mark = b.mark()
    assert transaction(b).code == 250
    wait_sessions_closed(b, mark)
    wait_backends_released(b, backend_ports)
    base_fds = proc_fds(b.pid)

    readings = []
    for rnd in range(2):
        mark = b.mark()
        results = run_batches(b.host, b.port, mixed_round(rng, ROUND), parallel=40)
        good = [got for kind, got in results if kind == "good"]
        delivered = sum(1 for got in good if b"\r\n250 2.0.0" in got or got.startswith(b"250 2.0.0"))
        assert delivered == len(good), f"round {rnd}: {len(good) - delivered}/{len(good)} good sessions not delivered"
        wait_sessions_closed(b, mark, timeout=30)
        wait_backends_released(b, backend_ports)
        assert b.alive()
        readings.append((proc_fds(b.pid), proc_rss_kb(b.pid)))
        print(f"round {rnd}: fds {readings[-1][0]} (baseline {base_fds}), VmRSS {readings[-1][1]} kB")

    for fds, _ in readings:
        assert fds <= base_fds + FD_TOLERANCE, f"descriptors leak: {base_fds} at start, {fds} after a round (seed {seed})"
    growth_mb = (readings[1][1] - readings[0][1]) / 1024
    assert growth_mb < RSS_GROWTH_MB, (f"VmRSS grew by {growth_mb:.1f} MB between 1,000 and 2,000 sessions "
                                       f"(seed {seed})")
    assert transaction(b).code == 250
