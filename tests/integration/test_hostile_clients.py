"""Hostile clients against a running backstop (in-line delivery to smtp-sink backends): seeded
random byte streams and abrupt disconnects at every point, STARTTLS misuse, slow-loris, output
amplification, connection limits released on every path, and sessions ended while the backend is
deciding. After each attack the daemon must still be running and serve a normal transaction;
at teardown it must stop cleanly with no sanitizer report (conftest's backstop_factory).

Seeds are printed; repeat a run with HOSTILE_SEED=N."""
import random
import signal
import socket
import ssl
import threading
import time

import pytest

from conftest import SMTPConn
from fake_backend import FakeBackend
from hostile_support import (hostile_domains, hostile_gateway, make_seed, proc_rss_kb,  # noqa: F401
                             rst_close, run_batches, script_for, sink, slow_sink, transaction,
                             wait_sessions_closed)

CONNECTIONS = 2000
PARALLEL = 40


def start(backstop_factory, sink, slow_sink=None, **gw):
    return backstop_factory(gateway=hostile_gateway(**gw), domains=hostile_domains(sink, slow_sink))


def test_random_hostile_streams(backstop_factory, sink, slow_sink):
    seed = make_seed("random streams")
    rng = random.Random(seed)
    b = start(backstop_factory, sink, slow_sink)
    mark = b.mark()
    scripts = [script_for(random.Random(rng.randrange(1 << 62))) for _ in range(CONNECTIONS)]
    t0 = time.monotonic()
    run_batches(b.host, b.port, scripts, parallel=PARALLEL)
    print(f"{len(scripts)} hostile connections in {time.monotonic() - t0:.1f}s")
    assert b.alive(), "backstop died under hostile clients (seed %d)" % seed
    wait_sessions_closed(b, mark, timeout=30)
    final = transaction(b)
    assert final.code == 250, final
    assert b.alive()


def test_truncated_transactions_at_every_offset(backstop_factory, sink, slow_sink):
    """A well-formed session cut (FIN or RST) after every single byte: after connect,
    mid-command, mid-DATA, right after the final dot, while the backend decides a RCPT."""
    b = start(backstop_factory, sink, slow_sink)
    mark = b.mark()
    whole = (b"EHLO client.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<u@slow.test>\r\n"
             b"RCPT TO:<v@example.test>\r\nDATA\r\nSubject: cut\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    scripts = []
    for cut in range(len(whole) + 1):
        scripts.append(("cut", [("send", whole[:cut]), ("close",)]))
        scripts.append(("cut", [("send", whole[:cut]), ("rst",)]))
    run_batches(b.host, b.port, scripts, parallel=PARALLEL)
    assert b.alive()
    wait_sessions_closed(b, mark, timeout=30)
    assert transaction(b).code == 250


def test_pipelined_replies_in_order(backstop_factory, sink, slow_sink):
    """Replies to a pipelined batch come in command order even when one RCPT waits a second on
    its backend and the others are decided at once."""
    b = start(backstop_factory, sink, slow_sink)
    with b.connect() as c:
        c.send(b"EHLO client.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<x@slow.test>\r\n"
               b"RCPT TO:<y@elsewhere.test>\r\nRCPT TO:<z@example.test>\r\nNOOP\r\nBOGUS\r\n"
               b"RSET\r\nRCPT TO:<w@example.test>\r\nQUIT\r\n")
        codes = [c.reply().code for _ in range(10)]
        # RCPT to slow.test: same transaction, other backend -> 250 first; a second backend for
        # the same transaction is refused with 452 by the relay; relay denied is 5xx.
        assert codes[0:3] == [250, 250, 250], codes
        assert codes[3] == 554, codes                          # relay access denied
        assert codes[4] == 452, codes                          # another backend: a new transaction
        assert codes[5:] == [250, 500, 250, 503, 221], codes
        assert c.closed()


def test_half_close_still_gets_every_reply(backstop_factory, sink):
    """A client that sends its commands and then shuts down its sending side (printf | nc) must
    still read every reply: EOF on input is not a reason to throw away queued replies."""
    b = start(backstop_factory, sink)
    failures = []
    for i in range(40):
        s = socket.create_connection((b.host, b.port), timeout=5)
        s.sendall(b"EHLO client.test\r\nNOOP\r\nMAIL FROM:<a@client.test>\r\nQUIT\r\n")
        s.shutdown(socket.SHUT_WR)
        got = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
        except OSError:
            pass
        s.close()
        if b"221 " not in got:
            failures.append((i, got[-200:]))
    assert not failures, f"{len(failures)}/40 half-closed sessions lost replies: {failures[:3]}"


def test_output_is_bounded_when_client_does_not_read(backstop_factory, sink):
    """EHLO costs the client 8 octets and the server ~150 octets of reply. A client that pipelines
    megabytes of EHLO and never reads must not make backstop buffer the replies without limit:
    reading input has to stop while the output is backed up."""
    b = start(backstop_factory, sink, command_timeout="30s")
    n = 400_000  # 3.2 MB of input, ~60 MB of replies if nothing pushes back
    flood = b"EHLO x\r\n" * n + b"MAIL FROM:<flood@client.test>\r\nRCPT TO:<marker@elsewhere.test>\r\n"
    s, sender, base, peak = flood_and_watch_rss(b, flood, lambda l: "marker@elsewhere.test" in l)
    # now read everything: the replies must all come, in order, once we read
    s.settimeout(20)
    pattern = b"250 SMTPUTF8\r\n"
    tail, ehlo_replies = b"", 0
    try:
        while b"marker@elsewhere.test" not in tail:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            ehlo_replies += (tail[-(len(pattern) - 1):] + chunk).count(pattern)
            tail = (tail + chunk)[-300:]
    finally:
        rst_close(s)
    sender.join(10)
    growth_mb = (peak - base) / 1024
    assert ehlo_replies == n, f"{ehlo_replies} EHLO replies for {n} EHLO"
    assert growth_mb < 16, f"backstop grew by {growth_mb:.0f} MB buffering replies nobody reads"
    assert b.alive()
    assert transaction(b).code == 250


def _sendall_quiet(s, data):
    try:
        s.sendall(data)
    except OSError:
        pass


def flood_and_watch_rss(b, flood, logged, seconds=8):
    """Send flood on a new connection from a thread, without reading, and sample backstop's VmRSS
    until a log line satisfies logged (or seconds pass; each wait is woken by the next log line).
    Returns the socket, the sender thread, VmRSS before and its peak, in kB."""
    base = proc_rss_kb(b.pid)
    s = socket.create_connection((b.host, b.port), timeout=5)
    sender = threading.Thread(target=lambda: _sendall_quiet(s, flood), daemon=True)
    sender.start()
    peak = base
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not any(logged(l) for l in b.log):
        peak = max(peak, proc_rss_kb(b.pid))
        with b._cond:
            b._cond.wait(0.05)
    return s, sender, base, max(peak, proc_rss_kb(b.pid))


# ---------------------------------------------------------------------------------------------
# STARTTLS misuse

def tls_gateway(tls_files, **over):
    cert, key = tls_files
    return hostile_gateway(tls_cert=str(cert), tls_key=str(key), **over)


def client_hello():
    """The first flight of a real TLS client, as bytes."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="mx.backstop.test")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


def starttls_conn(b):
    c = b.connect()
    c.ehlo()
    r = c.cmd("STARTTLS")
    assert r.code == 220, r
    return c


def tls_works(b):
    c = starttls_conn(b)
    c.starttls()
    r = c.ehlo()
    assert "STARTTLS" not in r.text
    c.close()


def test_starttls_then_garbage(backstop_factory, sink, tls_files):
    """Garbage instead of a ClientHello: the handshake fails (or, for a partial record, times
    out at command_timeout) and the connection is closed; nothing is answered in clear text."""
    b = backstop_factory(gateway=tls_gateway(tls_files, command_timeout="2s"), domains=hostile_domains(sink))
    mark = b.mark()
    seed = make_seed("starttls garbage")
    rng = random.Random(seed)
    for i in range(20):
        c = starttls_conn(b)
        junk = rng.choice([b"EHLO x\r\n", b"GET / HTTP/1.0\r\n\r\n", rng.randbytes(rng.randrange(1, 3000)),
                           b"\x16\x03\x01\xff\xff" + rng.randbytes(200), client_hello()[:rng.randrange(1, 60)]
                           + rng.randbytes(50)])
        c.send(junk)
        assert c.closed(timeout=8), f"connection {i} not closed after {junk[:40]!r} instead of a ClientHello"
        assert not c.buf.startswith(b"250") and not c.buf.startswith(b"5"), f"answered in clear: {c.buf!r}"
        c.close()
    wait_sessions_closed(b, mark, timeout=10)
    assert b.alive()
    tls_works(b)


def test_starttls_then_disconnect(backstop_factory, sink, tls_files):
    b = backstop_factory(gateway=tls_gateway(tls_files), domains=hostile_domains(sink))
    mark = b.mark()
    hello = client_hello()
    for i in range(30):
        c = starttls_conn(b)
        how = i % 3
        if how == 1:
            c.send(hello[: len(hello) // 2])  # mid-handshake
        if how == 2:
            c.send(hello)
        (rst_close if i % 2 else socket.socket.close)(c.sock)
    # and without waiting for the 220
    for i in range(10):
        c = b.connect()
        c.send(b"EHLO x\r\nSTARTTLS\r\n")
        rst_close(c.sock)
    wait_sessions_closed(b, mark, timeout=10)
    assert b.alive()
    tls_works(b)


def test_commands_pipelined_after_starttls_are_discarded(backstop_factory, sink, tls_files):
    b = backstop_factory(gateway=tls_gateway(tls_files), domains=hostile_domains(sink))
    with b.connect() as c:
        c.ehlo()
        c.send(b"STARTTLS\r\nMAIL FROM:<injected@client.test>\r\nNOOP\r\nRSET\r\n")
        r = c.reply()
        assert r.code == 220, r
        # nothing else may arrive in clear text: SMTPConn.starttls() checks that no clear-text
        # bytes are buffered, and a clear-text reply after the 220 would break the handshake
        c.starttls()
        c.ehlo()
        r = c.cmd("RCPT TO:<u@example.test>")
        assert r.code == 503, f"MAIL pipelined before the handshake was executed: {r}"
    b.wait_log(r"discarded \d+ octets pipelined after STARTTLS")
    assert b.alive()


def test_starttls_twice_and_before_ehlo(backstop_factory, sink, tls_files):
    b = backstop_factory(gateway=tls_gateway(tls_files), domains=hostile_domains(sink))
    with b.connect() as c:
        r = c.cmd("STARTTLS")
        assert r.code == 503, r
        r = c.cmd("STARTTLS now")
        assert (r.code, r.enhanced) == (501, "5.5.4"), r       # the syntax is judged first
        c.ehlo()
        assert c.cmd("STARTTLS").code == 220
        c.starttls()
        r = c.ehlo()
        assert "STARTTLS" not in r.text, r
        r = c.cmd("STARTTLS")
        assert r.code == 503 and r.enhanced == "5.5.1", r
        # and the session still works
        assert c.cmd("MAIL FROM:<a@client.test>").code == 250
        assert c.cmd("RCPT TO:<u@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(b"Subject: tls\r\n\r\nhi\r\n.\r\n")
        assert c.reply().code == 250
        assert c.cmd("QUIT").code == 221


def test_starttls_silent_handshake_times_out(backstop_factory, sink, tls_files):
    """STARTTLS, then nothing (or half a ClientHello): closed within the command timeout."""
    b = backstop_factory(gateway=tls_gateway(tls_files, command_timeout="2s"), domains=hostile_domains(sink))
    mark = b.mark()
    hello = client_hello()
    conns = []
    for i in range(6):
        c = starttls_conn(b)
        if i % 2:
            c.send(hello[:20])
        conns.append(c)
    for c in conns:
        assert c.closed(timeout=8), "a stalled TLS handshake was not timed out"
        c.close()
    wait_sessions_closed(b, mark, timeout=10)
    tls_works(b)


def test_abrupt_disconnects_inside_tls(backstop_factory, sink, slow_sink, tls_files):
    b = backstop_factory(gateway=tls_gateway(tls_files), domains=hostile_domains(sink, slow_sink))
    mark = b.mark()
    for i in range(12):
        c = starttls_conn(b)
        tls = c.starttls()
        c.ehlo()
        c.cmd("MAIL FROM:<a@client.test>")
        stage = i % 4
        if stage == 0:
            tls.sendall(b"RCPT TO:<u@slow.test>\r\n")  # backend deciding
        elif stage >= 1:
            assert c.cmd("RCPT TO:<u@example.test>").code == 250
        if stage >= 2:
            assert c.cmd("DATA").code == 354
            tls.sendall(b"Subject: x\r\n\r\n" + b"y" * 5000)
        if stage == 3:
            tls.sendall(b"\r\n.\r\n")
        rst_close(tls)
    wait_sessions_closed(b, mark, timeout=15)
    assert b.alive()
    tls_works(b)


# ---------------------------------------------------------------------------------------------
# Slow-loris and timeouts

def _loris(host, port, text, result, idx, limit):
    s = socket.create_connection((host, port), timeout=5)
    t0 = time.monotonic()
    got = b""
    s.settimeout(1.0)
    try:
        while b"\r\n" not in got:  # the banner
            got += s.recv(4096)
        got = b""
        i = 0
        while time.monotonic() - t0 < limit:
            if i < len(text):
                try:
                    s.send(text[i:i + 1])
                except OSError:  # backstop closed the connection (RST after our unread bytes)
                    result[idx] = (got, time.monotonic() - t0, True)
                    return
                i += 1
            try:
                chunk = s.recv(4096)  # also paces the attack: one byte a second
                if not chunk:
                    result[idx] = (got, time.monotonic() - t0, True)
                    return
                got += chunk
            except socket.timeout:
                pass
            except OSError:
                result[idx] = (got, time.monotonic() - t0, True)
                return
        result[idx] = (got, time.monotonic() - t0, False)
    finally:
        s.close()


def test_slowloris_bounded_by_command_timeout(backstop_factory, sink):
    """Connections dribbling one byte a second of a command line are cut at command_timeout
    (2 s) with 421 4.4.2, however steadily they dribble."""
    b = start(backstop_factory, sink, command_timeout="2s")
    n, limit = 12, 9.0
    result = [None] * n
    text = b"EHLO " + b"slowloris" * 20 + b"\r\n"
    threads = [threading.Thread(target=_loris, args=(b.host, b.port, text, result, i, limit)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(limit + 10)
    bad = [(i, r) for i, r in enumerate(result) if r is None or not r[2] or b"421 4.4.2" not in r[0]
           or r[1] > 2.0 + 3.0]
    assert not bad, (f"{len(bad)}/{n} slow-loris connections not cut with 421 4.4.2 within "
                     f"command_timeout+3s: {bad[:3]}")
    assert b.alive()
    assert transaction(b).code == 250


def test_idle_connections_time_out(backstop_factory, sink):
    b = start(backstop_factory, sink, command_timeout="2s")
    mark = b.mark()
    conns = [b.connect() for _ in range(10)]
    conns[1].ehlo()
    conns[2].ehlo()
    conns[2].cmd("MAIL FROM:<a@client.test>")
    conns[3].send(b"EHLO half-a-comm")
    for c in conns:
        c.sock.settimeout(6)
        r = c.reply()
        assert r.code == 421 and r.enhanced == "4.4.2", r
        assert c.closed(timeout=3)
        c.close()
    wait_sessions_closed(b, mark, timeout=5)


def test_timeout_before_delayed_banner_closes_the_session(backstop_factory, sink):
    """greet_delay longer than command_timeout: the session that timed out before its banner
    must stay closed (no banner after the 421, no session left behind)."""
    b = start(backstop_factory, sink, command_timeout="1s", greet_delay="3s")
    mark = b.mark()
    c = SMTPConn(b.host, b.port, read_banner=False)
    c.sock.settimeout(8)
    r = c.reply()
    assert r.code == 421 and r.enhanced == "4.4.2", r
    assert c.closed(timeout=6), f"connection left open after the 421 timeout; got {c.buf!r}"
    assert c.buf == b"", f"bytes after the 421: {c.buf!r}"
    c.close()
    wait_sessions_closed(b, mark, timeout=5)


def test_shutdown_while_backend_decides(backstop_factory, sink, tmp_path):
    """SIGTERM with a RCPT waiting on a slow backend: the client gets 421 4.3.2 at the shutdown
    deadline and then nothing else (no late RCPT reply after the 421)."""
    slow = FakeBackend(store=False, rcpt_delay=2.0)
    try:
        b = backstop_factory(gateway=hostile_gateway(shutdown_timeout="1s"),
                             domains={"example.test": {"deliver": slow.addr}})
        with b.connect() as c:
            c.ehlo()
            assert c.cmd("MAIL FROM:<a@client.test>").code == 250
            c.send(b"RCPT TO:<u@example.test>\r\n")
            b.wait_log(r"backend 127\.0\.0\.1:\d+: session open")
            b.send_signal(signal.SIGTERM)
            c.sock.settimeout(10)
            r = c.reply()
            assert r.code == 421 and r.enhanced == "4.3.2", r
            c.closed(timeout=10)
            assert c.buf == b"", f"replies after the 421: {c.buf!r}"
        b.proc.wait(15)
    finally:
        slow.stop()


# ---------------------------------------------------------------------------------------------
# Connection limits

def _five(b):
    conns = [b.connect() for _ in range(5)]
    for c in conns:
        assert c.banner.code == 220, c.banner
    return conns


def _sixth_refused(b):
    c = SMTPConn(b.host, b.port)
    assert c.banner.code == 421 and c.banner.enhanced == "4.7.0", c.banner
    assert c.closed(timeout=5)
    c.close()


def test_connection_limit_per_ip_released_on_every_path(backstop_factory, sink, slow_sink):
    b = start(backstop_factory, sink, slow_sink, max_connections_per_ip=5, command_timeout="2s")

    # round 1: five in, the sixth refused, the five still work; then end them five ways
    mark = b.mark()
    conns = _five(b)
    for _ in range(3):
        _sixth_refused(b)
    for c in conns:
        assert c.cmd("NOOP").code == 250
        c.ehlo()
    assert conns[0].cmd("QUIT").code == 221
    conns[1].close()
    rst_close(conns[2].sock)
    conns[3].cmd("MAIL FROM:<a@client.test>")
    conns[3].send(b"RCPT TO:<u@slow.test>\r\n")  # the backend is deciding
    rst_close(conns[3].sock)
    conns[4].cmd("MAIL FROM:<a@client.test>")
    assert conns[4].cmd("RCPT TO:<u@example.test>").code == 250
    assert conns[4].cmd("DATA").code == 354
    conns[4].send(b"Subject: x\r\n\r\npartial")
    rst_close(conns[4].sock)
    wait_sessions_closed(b, mark, timeout=10)

    # round 2: all five slots are free again; this time they end by timeout
    mark = b.mark()
    conns = _five(b)
    _sixth_refused(b)
    conns[0].ehlo()
    conns[1].send(b"EHLO unfinished")
    for c in conns:
        c.sock.settimeout(6)
        r = c.reply()
        assert r.code == 421 and r.enhanced == "4.4.2", r
        assert c.closed(timeout=5)
        c.close()
    wait_sessions_closed(b, mark, timeout=10)

    # round 3: free again; too many errors and non-SMTP ends count as well
    mark = b.mark()
    conns = _five(b)
    _sixth_refused(b)
    conns[0].send(b"GET / HTTP/1.0\r\n\r\n")
    conns[1].send(b"BOGUS\r\n" * 200)
    for c in conns[:2]:
        assert c.closed(timeout=5)
    for c in conns:
        c.close()
    wait_sessions_closed(b, mark, timeout=10)

    conns = _five(b)
    _sixth_refused(b)
    for c in conns:
        assert c.cmd("QUIT").code == 221
        c.close()
    assert transaction(b).code == 250


def test_pipelined_rcpts_behind_a_slow_one_are_bounded(backstop_factory, sink):
    """RCPTs are decided in parallel and answered in order, so while the first waits on a slow
    backend every later RCPT (even one refused at once: syntax, policy, over max_recipients)
    waits in the session's queue. A client pipelining RCPTs by the hundred thousand must not
    make that queue, or the replies it releases at once, grow without limit."""
    slow = FakeBackend(store=False, rcpt_delay=4.0)
    try:
        b = backstop_factory(gateway=hostile_gateway(command_timeout="30s", backend_command_timeout="10s"),
                             domains={"example.test": {"deliver": sink.addr}, "slow.test": {"deliver": slow.addr}})
        n = 100_000
        flood = (b"EHLO client.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<u@slow.test>\r\n"
                 + b"RCPT TO:<>\r\n" * n + b"QUIT\r\n")
        s, sender, base, peak = flood_and_watch_rss(b, flood, lambda l: "backend=127.0.0.1" in l and "u@slow.test" in l)
        rst_close(s)
        sender.join(10)
        growth_mb = (peak - base) / 1024
        assert growth_mb < 16, f"backstop grew by {growth_mb:.0f} MB queueing pipelined RCPTs"
        assert b.alive()
        assert transaction(b).code == 250
    finally:
        slow.stop()
