"""In-line delivery against a scripted fake backend: the backend's answers reach the client, every
backend failure (close, stall, 421, garbage at each step of the dialogue) turns into a 4xx (or,
once the backend has the final dot, into no reply at all) and never into a 250 for a message
the backend did not acknowledge, backstop keeps serving other
sessions meanwhile, target choice (failover, round-robin, circuit breaker), STARTTLS towards the
backend, and no fd or memory growth after 1,000 faulty sessions."""
import concurrent.futures
import subprocess
import threading
import time

import pytest

from conftest import BACKSTOP_BIN
from fake_backend import FakeBackend
from relay_fixtures import (Outcome, deliver, fakes, message, proc_fds, proc_rss_kb,  # noqa: F401
                            relay_gateway, smtp_sink, stuff, transaction)

OK_DOMAIN = "ok.test"


def start(backstop_factory, routes, gateway=None, domain_keys=None):
    """routes: {domain: "host:port[, ...]"}; every domain gets the same extra keys."""
    domains = {d: {"deliver": a, **(domain_keys or {})} for d, a in routes.items()}
    return backstop_factory(gateway=relay_gateway(**(gateway or {})), domains=domains)


# ---------------------------------------------------------------------------------------------
# The backend's answers are the client's

def test_message_delivered_byte_for_byte(backstop_factory, fakes):
    fb = fakes()
    b = start(backstop_factory, {"example.test": fb.addr})
    content = message("byte for byte")
    o = deliver(b, "user@example.test", content)
    assert o.rcpts[0].code == 250 and o.data.code == 354, o
    assert (o.final.code, o.final.enhanced) == (250, "2.0.0"), o
    assert "queued as FAKE" in o.final.text, o
    assert len(fb.messages) == 1
    m = fb.messages[0]
    assert m.mail_from == "<sender@client.test>" or m.mail_from.startswith("<sender@client.test>")
    assert m.rcpts == ["<user@example.test>"]
    # backstop adds exactly one Received: header first, then the content as sent (stuffing kept)
    assert m.received.startswith(b"Received: from client.test ([127.0.0.1])"), m.received
    assert b"\r\n\tfor <user@example.test>;" in m.received, m.received
    assert bytes(m.raw) == m.received + stuff(content), bytes(m.raw)


def test_backend_rcpt_refusal_reaches_client(backstop_factory, fakes):
    fb = fakes(rcpt_reply=lambda cmd: "550 5.1.1 <nobody@example.test>: no such user here"
               if "nobody" in cmd else None)
    b = start(backstop_factory, {"example.test": fb.addr})
    with b.connect() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@client.test>").code == 250
        r = c.cmd("RCPT TO:<nobody@example.test>")
        assert (r.code, r.enhanced) == (550, "5.1.1"), r
        assert "no such user here" in r.text, r
        r = c.cmd("RCPT TO:<user@example.test>")
        assert r.code == 250, r
        assert c.cmd("DATA").code == 354
        c.send(stuff(message()) + b".\r\n")
        assert c.reply().code == 250
    assert fb.messages[0].rcpts == ["<user@example.test>"]
    assert fb.connections == 1


def test_backend_mail_refusal_reaches_client(backstop_factory, fakes):
    fb = fakes(mail_reply="553 5.7.1 sender refused by backend")
    b = start(backstop_factory, {"example.test": fb.addr})
    with b.connect() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@client.test>").code == 250
        r = c.cmd("RCPT TO:<user@example.test>")
        assert (r.code, r.enhanced) == (553, "5.7.1"), r
        assert "sender refused by backend" in r.text


def test_final_reply_is_the_backends(backstop_factory, fakes):
    fb = fakes(faults={"dot": "554 5.7.0 content rejected by backend policy"})
    b = start(backstop_factory, {"example.test": fb.addr})
    o = deliver(b, "user@example.test")
    assert (o.final.code, o.final.enhanced) == (554, "5.7.0"), o
    assert "content rejected by backend policy" in o.final.text


def test_mail_params_passed_when_supported(backstop_factory, fakes):
    fb = fakes()
    b = start(backstop_factory, {"example.test": fb.addr})
    o = deliver(b, "user@example.test", mail_params=" SIZE=1000 BODY=8BITMIME")
    assert o.delivered, o
    cmds = [c for c in fb.commands if c.startswith("MAIL")]
    assert cmds == ["MAIL FROM:<sender@client.test> SIZE=1000 BODY=8BITMIME"], cmds


def test_second_domain_on_other_backend_gets_452(backstop_factory, fakes):
    f1, f2 = fakes(), fakes()
    b = start(backstop_factory, {"example.test": f1.addr, "other.test": f2.addr})
    with b.connect() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<sender@client.test>")
        assert c.cmd("RCPT TO:<a@example.test>").code == 250
        r = c.cmd("RCPT TO:<b@other.test>")
        assert (r.code, r.enhanced) == (452, "4.5.3"), r
        assert c.cmd("DATA").code == 354
        c.send(stuff(message()) + b".\r\n")
        assert c.reply().code == 250
        # the next transaction may go to the other backend
        o = transaction(c, "b@other.test")
        assert o.delivered, o
    assert len(f1.messages) == 1 and len(f2.messages) == 1
    assert f2.connections == 1


def test_rset_mirrored_and_backend_session_reused(backstop_factory, fakes):
    fb = fakes()
    b = start(backstop_factory, {"example.test": fb.addr})
    with b.connect() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<sender@client.test>")
        assert c.cmd("RCPT TO:<a@example.test>").code == 250
        assert c.cmd("RSET").code == 250
        for i in range(3):
            o = transaction(c, ["x@example.test", "y@example.test"], message(f"reuse {i}"))
            assert o.delivered, o
        c.cmd("QUIT")
    fb.wait_for(lambda f: len(f.messages) == 3)
    assert fb.connections == 1, fb.commands
    verbs = [c.split(" ")[0] for c in fb.commands if not c.startswith("EHLO")]
    assert verbs[:3] == ["MAIL", "RCPT", "RSET"], verbs
    assert len(fb.messages) == 3 and all(m.rcpts == ["<x@example.test>", "<y@example.test>"]
                                         for m in fb.messages)


def test_unreachable_backend_451_441(backstop_factory, dead_port):
    # a connect timeout past the client's I/O timeout: only the refusal itself can answer in time
    b = start(backstop_factory, {"example.test": f"127.0.0.1:{dead_port}"},
              gateway={"backend_connect_timeout": "5m"})
    o = deliver(b, "user@example.test")
    assert (o.rcpts[0].code, o.rcpts[0].enhanced) == (451, "4.4.1"), o


# ---------------------------------------------------------------------------------------------
# Faults at every step

PRE_SESSION = ("banner", "ehlo", "starttls")
CASES = [(step, action) for step in ("banner", "ehlo", "starttls", "mail", "rcpt", "data", "body",
                                     "dot", "after")
         for action in ("close", "stall", "421", "garbage")] + [("body", "freeze")]


def fault_content(step, action):
    if step == "body":
        # big enough that the final dot is still backstop's when the backend fails at 64 KiB
        # (closes, or says something mid-content): the backend cannot have the whole message
        n = 256 * 1024 if action == "stall" else 16 * 1024 * 1024
        return message(f"{step} {action}", ["x" * 998] * (n // 1000))
    return message(f"{step} {action}")


# The backend reads the whole message, final dot included, and then says nothing usable: the
# outcome is unknown and the client gets no reply at all ("stall" at body reads on to the dot).
# A 250 to the dot with garbage behind it in the same read is a backend out of step: no reply
# of that read can be trusted to be the dot's, so that is unknown too (the backend acked it).
UNKNOWN = {("dot", "close"), ("dot", "stall"), ("dot", "garbage"), ("body", "stall"), ("after", "garbage")}


def expected(step, action):
    """(where the client is told, code, enhanced) for a fault at step; code None: no reply, the
    connection closed."""
    if (step, action) in UNKNOWN:
        return ("final", None, None)
    if step == "banner" and action == "421":
        return ("rcpt", 451, "4.4.5")  # "too many connections": busy, not down
    if step in PRE_SESSION:
        return ("rcpt", 451, "4.4.1")
    if step in ("mail", "rcpt"):
        return ("rcpt", 451, "4.4.2")
    if step == "data":
        return ("data", 451, "4.4.2")
    if step in ("body", "dot"):
        return ("final", 451, "4.4.2")
    return ("final", 250, "2.0.0")


def check_outcome(step, action, o, fb):
    where, code, enh = expected(step, action)
    if code is None:
        assert o.final is None and o.closed, f"fault {action} at {step}: want no reply, got {o!r}"
        assert len(fb.acked) == (step == "after")
        return
    got = {"rcpt": o.rcpts[0] if o.rcpts else None, "data": o.data, "final": o.final}[where]
    assert got is not None and (got.code, got.enhanced) == (code, enh), \
        f"fault {action} at {step}: want {code} {enh} at {where}, got {o!r}"
    # never a 250 for a message the backend did not acknowledge
    assert (o.final is not None and o.final.code == 250) == (len(fb.acked) == 1), (o, fb.acked)


@pytest.mark.parametrize("step,action", CASES, ids=[f"{s}-{a}" for s, a in CASES])
def test_fault(backstop_factory, fakes, tls_files, step, action):
    fb = fakes(faults={step: action}, tls_files=tls_files if step == "starttls" else None)
    ok = fakes()
    b = start(backstop_factory, {"example.test": fb.addr, OK_DOMAIN: ok.addr})
    content = fault_content(step, action)
    result = {}

    def faulty():
        with b.connect(timeout=30) as c:
            c.ehlo()
            t0 = time.monotonic()
            result["o"] = transaction(c, "user@example.test", content)
            result["t"] = time.monotonic() - t0
            if result["o"].closed:  # no reply to the dot: the client retries on a new connection
                result["next"] = deliver(b, f"user@{OK_DOMAIN}")
                return
            # the client session is still good: the next transaction goes elsewhere fine
            c.cmd("RSET")
            result["next"] = transaction(c, f"user@{OK_DOMAIN}")
            c.cmd("QUIT")

    t = threading.Thread(target=faulty)
    t.start()
    try:
        fb.wait_for(lambda f: f.faulted, timeout=15)
        # while the faulty session hangs on its backend, other sessions are served
        t0 = time.monotonic()
        o = deliver(b, f"user@{OK_DOMAIN}", message("meanwhile"))
        assert o.delivered, o
        assert time.monotonic() - t0 < 1.0, "a stalled backend held up another session"
    finally:
        t.join(40)
    assert not t.is_alive(), "the faulty session did not end"
    assert "o" in result, "the faulty session raised"
    check_outcome(step, action, result["o"], fb)
    assert result["t"] < 10, f"fault {action} at {step} took {result['t']:.1f}s"
    assert result["next"].delivered, result["next"]


# ---------------------------------------------------------------------------------------------
# Target choice

def test_failover_to_second_target(backstop_factory, fakes, dead_port):
    fb = fakes()
    b = start(backstop_factory, {"example.test": f"127.0.0.1:{dead_port}, {fb.addr}"},
              gateway={"backend_retry_after": "30s"})
    for i in range(3):
        o = deliver(b, "user@example.test", message(f"failover {i}"))
        assert o.delivered, o
    assert len(fb.acked) == 3


def test_banner_with_connect_completion(backstop_factory, fakes, dead_port):
    """A backend whose greeting arrives in the same loop iteration as the connect completion
    (likely right after a failed first target) must still be talked to; a greeting that is
    already buffered must not be left unread until the connect timeout."""
    fb = fakes()
    # a connect timeout far past the client's I/O timeout: a session left waiting for a greeting
    # already received would time out here, deterministically, instead of being merely slow
    b = start(backstop_factory, {"example.test": f"127.0.0.1:{dead_port}, {fb.addr}"},
              gateway={"backend_connect_timeout": "5m"})
    for i in range(40):
        o = deliver(b, "user@example.test", message(f"race {i}"))
        assert o.delivered, (i, o)


def test_failover_after_banner_421(backstop_factory, fakes):
    bad, good = fakes(faults={"banner": "421"}), fakes()
    b = start(backstop_factory, {"example.test": f"{bad.addr}, {good.addr}"})
    o = deliver(b, "user@example.test")
    assert o.delivered, o
    assert bad.connections == 1 and len(good.acked) == 1


def test_round_robin_spreads(backstop_factory, smtp_sink, fakes):
    f1, f2 = fakes(), fakes()
    b = start(backstop_factory, {"example.test": f"{f1.addr}, {f2.addr}"},
              gateway={"workers": 1}, domain_keys={"deliver_policy": "round-robin"})
    for i in range(10):
        assert deliver(b, "user@example.test", message(f"rr {i}")).delivered
    assert len(f1.acked) + len(f2.acked) == 10
    assert len(f1.acked) >= 3 and len(f2.acked) >= 3, (len(f1.acked), len(f2.acked))


def test_round_robin_two_sinks(backstop_factory, smtp_sink):
    """Round-robin across two real smtp-sink processes: both get connections."""
    s1, s2 = smtp_sink(), smtp_sink()
    b = start(backstop_factory, {"example.test": f"{s1.addr}, {s2.addr}"},
              gateway={"workers": 1}, domain_keys={"deliver_policy": "round-robin"})
    seen = set()
    for i in range(6):
        o = deliver(b, "user@example.test", message(f"sink {i}"))
        assert o.delivered, o
    for l in b.log:
        for s in (s1, s2):
            if f"backend {s.addr}: session open" in l or f"backend={s.addr}" in l:
                seen.add(s.addr)
    assert seen == {s1.addr, s2.addr}, b.log_text()


# backend_health.h: the breaker trips after BACKEND_TRIP_FAILURES failures in a row (one lost SYN
# must not turn into retry_after of 451s), so up to that many sessions may try a dead target.
TRIP_FAILURES = 2


def test_circuit_breaker_skips_dead_backend(backstop_factory, fakes):
    dead = fakes(faults={"banner": "close"})
    b = start(backstop_factory, {"example.test": dead.addr},
              gateway={"backend_retry_after": "30s", "backend_connect_timeout": "5s"})
    for _ in range(TRIP_FAILURES):
        o = deliver(b, "user@example.test")
        assert (o.rcpts[0].code, o.rcpts[0].enhanced) == (451, "4.4.1"), o
    assert dead.connections == TRIP_FAILURES
    for _ in range(10):
        o = deliver(b, "user@example.test")
        assert (o.rcpts[0].code, o.rcpts[0].enhanced) == (451, "4.4.1"), o
    assert dead.connections == TRIP_FAILURES, "the circuit breaker let sessions try the failed backend"


def test_circuit_breaker_failover_goes_straight_to_second(backstop_factory, fakes):
    bad, good = fakes(faults={"banner": "close"}), fakes()
    b = start(backstop_factory, {"example.test": f"{bad.addr}, {good.addr}"},
              gateway={"backend_retry_after": "30s"})
    for i in range(5):
        assert deliver(b, "user@example.test", message(f"cb {i}")).delivered
    assert bad.connections == TRIP_FAILURES and len(good.acked) == 5


# ---------------------------------------------------------------------------------------------
# STARTTLS towards the backend

def test_starttls_may_used_when_offered(backstop_factory, fakes, tls_files):
    fb = fakes(tls_files=tls_files)
    b = start(backstop_factory, {"example.test": fb.addr})
    assert deliver(b, "user@example.test").delivered
    assert fb.messages[0].tls is True


def test_starttls_must_with_ca(backstop_factory, fakes, tls_files):
    fb = fakes(tls_files=tls_files)
    # the certificate is for mx.backstop.test only; the target is 127.0.0.1, which must + CA
    # checks against the certificate (RFC 6125 IP match): it does not match, so no delivery
    # at all, in clear or not
    b = start(backstop_factory, {"example.test": fb.addr},
              domain_keys={"deliver_tls": "must", "deliver_tls_ca": str(tls_files[0])})
    o = deliver(b, "user@example.test")
    assert (o.rcpts[0].code, o.rcpts[0].enhanced) == (451, "4.4.1"), o
    assert fb.messages == [], fb.messages


def test_starttls_must_not_offered_never_clear(backstop_factory, fakes):
    fb = fakes()  # no STARTTLS
    b = start(backstop_factory, {"example.test": fb.addr}, domain_keys={"deliver_tls": "must"})
    o = deliver(b, "user@example.test")
    assert o.rcpts[0].code == 451, o
    assert not any(c.startswith(("MAIL", "RCPT", "DATA")) for c in fb.commands), fb.commands


def test_starttls_none_not_used(backstop_factory, fakes, tls_files):
    fb = fakes(tls_files=tls_files)
    b = start(backstop_factory, {"example.test": fb.addr}, domain_keys={"deliver_tls": "none"})
    assert deliver(b, "user@example.test").delivered
    assert fb.messages[0].tls is False
    assert "STARTTLS" not in fb.commands


# ---------------------------------------------------------------------------------------------
# Content refused by backstop mid-stream is never completed at the backend

@pytest.mark.parametrize("bad", [b"bare\nLF line\r\n", b"bare\rCR line\r\n"], ids=["LF", "CR"])
def test_bare_newline_refused_never_completed(backstop_factory, fakes, bad):
    fb = fakes()
    b = start(backstop_factory, {"example.test": fb.addr})
    content = message("bare") + bad + b"more\r\n"
    with b.connect() as c:
        c.ehlo()
        o = transaction(c, "user@example.test", content)
        assert (o.final.code, o.final.enhanced) == (554, "5.6.0"), o
        assert c.closed()  # nothing after a bare CR or LF is a command
    # the next session's message is delivered on a new backend session
    with b.connect() as c:
        c.ehlo()
        o2 = transaction(c, "user@example.test", message("after bare"))
        assert o2.delivered, o2
    assert len(fb.messages) == 1 and b"after bare" in bytes(fb.messages[0].raw)
    assert len(fb.acked) == 1


def test_oversize_refused_never_completed(backstop_factory, fakes):
    fb = fakes()
    b = backstop_factory(gateway=relay_gateway(max_message_size="64K"),
                         domains={"example.test": {"deliver": fb.addr}})
    content = message("big", ["y" * 900] * 200)
    o = deliver(b, "user@example.test", content)
    assert (o.final.code, o.final.enhanced) == (552, "5.3.4"), o
    fb.wait_for(lambda f: f.active == 0)
    assert not fb.messages, "the backend got a final dot for a refused message"


# ---------------------------------------------------------------------------------------------
# 1,000 faulty sessions: no fd or memory growth

LEAK_CASES = [c for c in CASES if c != ("body", "freeze")] + [("none", "ok")]


def is_asan():
    out = subprocess.run(["ldd", BACKSTOP_BIN], capture_output=True, text=True).stdout
    return "libasan" in out


def test_no_leak_after_1000_faulty_sessions(backstop_factory, fakes, tls_files, monkeypatch):
    asan = is_asan()
    if asan:  # keep ASan's quarantine small so RSS shows real growth
        monkeypatch.setenv("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:quarantine_size_mb=1:"
                           "thread_local_quarantine_size_kb=64")
    backends = {}
    for step, action in LEAK_CASES:
        faults = {} if step == "none" else {step: action}
        backends[f"{step}-{action}.fault.test"] = fakes(
            faults=faults, tls_files=tls_files if step == "starttls" else None,
            body_fault_after=4096)
    b = start(backstop_factory, {d: f.addr for d, f in backends.items()},
              gateway={"backend_command_timeout": "300ms", "backend_data_timeout": "300ms",
                       "backend_connect_timeout": "300ms"})
    domains = sorted(backends)
    small = message("leak", ["z" * 500] * 20)

    def one(i):
        d = domains[i % len(domains)]
        try:
            with b.connect(timeout=20) as c:
                c.ehlo()
                o = transaction(c, f"user{i}@{d}", small)
                if not o.closed:  # closed: the backend had the dot and never answered
                    c.cmd("QUIT")
                return d, o
        except (ConnectionError, OSError) as e:
            return d, e

    def run(n):
        with concurrent.futures.ThreadPoolExecutor(16) as ex:
            return list(ex.map(one, range(n)))

    def settled():
        # every client session has ended; wait until backstop has let go of every backend
        deadline = time.monotonic() + 10
        while sum(f.active for f in backends.values()) and time.monotonic() < deadline:
            for f in backends.values():
                f.wait_for(lambda x: x.active == 0, timeout=max(0.1, deadline - time.monotonic()))
        return proc_fds(b.pid), proc_rss_kb(b.pid)

    warm = run(200)  # warm-up: arenas, TLS, caches
    fd0, rss0 = settled()
    results = run(1000)
    fd1, rss1 = settled()
    errors = [(d, o) for d, o in results if isinstance(o, Exception)]
    assert not errors, errors[:5]
    bad = [(d, o) for d, o in results if o.delivered and not d.startswith(("none-", "after-"))]
    assert not bad, f"250 for messages the backend did not acknowledge: {bad[:3]}"
    acked = sum(len(f.acked) for f in backends.values())
    got250 = sum(1 for _, o in warm + results if not isinstance(o, Exception) and o.delivered)
    # acknowledged but unknown to backstop: a 250 with garbage behind it in the same read
    unknown = sum(1 for d, o in warm + results if not isinstance(o, Exception) and o.closed
                  and d.startswith("after-garbage"))
    assert got250 + unknown == acked, f"client got {got250} 250s and {unknown} unknown, " \
                                      f"backends acknowledged {acked}"
    assert fd1 - fd0 <= 2, f"fds: {fd0} before, {fd1} after 1,000 faulty sessions"
    limit = 16384 if asan else 4096
    assert rss1 - rss0 <= limit, f"VmRSS: {rss0} kB before, {rss1} kB after 1,000 faulty sessions"
