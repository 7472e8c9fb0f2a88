"""Harvest defence (issue 12): budgets of unknown recipients per client address and per client
network across sessions, the tarpit, 421 at the banner during the penalty, budgets kept across
SIGHUP, UNAVAILABLE verdicts never counted, and callout_max_rate holding under a flood.

Many client addresses without network namespaces: client sockets are bound to addresses of
127.0.0.0/8 (127.0.1.x and 127.0.2.x are different /24s); backstop listens on 127.0.0.1.
"""
import select
import signal
import socket
import threading
import time

from conftest import IO_TIMEOUT, SMTPConn
from callout_fixtures import fake  # noqa: F401  (fixture)

KNOWN = "alice@example.test"


def conn_from(b, source, timeout=IO_TIMEOUT, read_banner=True):
    """An SMTPConn to backstop b from the local address source."""
    c = SMTPConn.__new__(SMTPConn)
    c.sock = socket.create_connection((b.host, b.port), timeout=timeout, source_address=(source, 0))
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.buf = b""
    c.banner = c.reply() if read_banner else None
    return c


def start(backstop_factory, backend, fv, **gw):
    # error_delay would slow every refusal past the 10th; test_error_delay.py tests it on its own
    gateway = {"harvest_tarpit": "200ms", "harvest_penalty": "1h", "harvest_network_limit": "0",
               "max_errors": 1000, "error_delay": "0s", "callout_max_rate": 0}
    gateway.update(gw)
    return backstop_factory(gateway=gateway, domains={"example.test": {
        "deliver": backend.addr, "verify": f"callout:{fv.addr}", "on_unavailable": "defer"}})


def mail(c):
    c.ehlo()
    r = c.cmd("MAIL FROM:<sender@client.test>")
    assert r.code == 250, r


def unknowns(b, source, n, tag):
    """n RCPTs of unknown addresses, one at a time, from source: each refused 550 5.1.1."""
    with conn_from(b, source) as c:
        assert c.banner.code == 220, c.banner
        mail(c)
        for i in range(n):
            r = c.cmd(f"RCPT TO:<nobody-{tag}-{i}@example.test>")
            assert (r.code, r.enhanced) == (550, "5.1.1"), r


def test_budget_per_address(backstop_factory, backend, fake):
    fv = fake(known=[KNOWN])
    b = start(backstop_factory, backend, fv, harvest_limit="3/1h")
    unknowns(b, "127.0.1.10", 2, "a")
    unknowns(b, "127.0.1.10", 1, "b")  # a new session goes on with the same budget
    b.wait_log(r"harvest: client=127\.0\.1\.10 budget=a:127\.0\.1\.10 reached: 3 unknown recipients")
    probes = fv.total_rcpts()
    # the penalty: new connections from it get 421 at the banner
    with conn_from(b, "127.0.1.10") as c:
        assert (c.banner.code, c.banner.enhanced) == (421, "4.7.0"), c.banner
        assert c.closed()
    # a client of another network, and another address of the same network, are not affected
    for src in ("127.0.2.20", "127.0.1.11"):
        with conn_from(b, src) as c:
            assert c.banner.code == 220, c.banner
            mail(c)
            r = c.cmd(f"RCPT TO:<{KNOWN}>")
            assert r.code == 250, r
    assert fv.total_rcpts() == probes + 1  # alice, probed once then cached


def test_over_budget_session_gets_450_after_the_tarpit(backstop_factory, backend, fake):
    fv = fake(known=[KNOWN])
    b = start(backstop_factory, backend, fv, harvest_limit="2/1h", harvest_tarpit="300ms")
    with conn_from(b, "127.0.1.30") as c:
        mail(c)
        for i in range(2):
            assert c.cmd(f"RCPT TO:<nobody-{i}@example.test>").code == 550
        probes = fv.total_rcpts()
        for rcpt in ("nobody-2@example.test", KNOWN):
            t0 = time.monotonic()
            r = c.cmd(f"RCPT TO:<{rcpt}>")
            took = time.monotonic() - t0
            assert (r.code, r.enhanced) == (450, "4.7.1"), r
            assert "too many unknown recipients" in r.text, r
            assert took >= 0.28, took
        assert fv.total_rcpts() == probes  # no probe for a client over budget
    assert b.wait_log(r"harvest=over budget=a:127\.0\.1\.30 unknown=2/2")


def test_no_tarpit_while_a_recipient_holds_the_backend(backstop_factory, backend, fake):
    """A transaction with a recipient accepted holds a backend connection: over budget, its RCPTs
    get 450 at once (tarpitted sessions holding backend connections would starve other clients)."""
    fv = fake(known=[KNOWN])
    b = start(backstop_factory, backend, fv, harvest_limit="2/1h", harvest_tarpit="50s",
              decision_timeout="60s")
    with conn_from(b, "127.0.1.31") as c:
        mail(c)
        assert c.cmd(f"RCPT TO:<{KNOWN}>").code == 250
        for i in range(2):
            assert c.cmd(f"RCPT TO:<nobody-{i}@example.test>").code == 550
        r = c.cmd("RCPT TO:<nobody-2@example.test>")  # IO timeout is far under the 50 s tarpit
        assert (r.code, r.enhanced) == (450, "4.7.1"), r
        assert c.cmd("RSET").code == 250
        assert c.cmd("MAIL FROM:<sender@client.test>").code == 250
        c.send("RCPT TO:<nobody-3@example.test>\r\n")  # no recipient now: tarpitted again
        readable, _, _ = select.select([c.sock], [], [], 0.5)
        assert not readable, "an over-budget RCPT with no backend connection held was not tarpitted"
    assert b.wait_log(r"harvest=over budget=a:127\.0\.1\.31 unknown=2/2 penalty_left_s=\d+ tarpit_ms=0")


def test_budget_per_network_spares_other_networks(backstop_factory, backend, fake):
    fv = fake(known=[KNOWN])
    b = start(backstop_factory, backend, fv, harvest_limit="10/1h", harvest_network_limit="4/1h")
    for i in range(4):  # four addresses of 127.0.1.0/24, one unknown each
        unknowns(b, f"127.0.1.{40 + i}", 1, f"n{i}")
    b.wait_log(r"budget=n:127\.0\.1\.0/24 reached: 4 unknown recipients")
    # an address of that network that never asked anything is refused too
    with conn_from(b, "127.0.1.99") as c:
        assert (c.banner.code, c.banner.enhanced) == (421, "4.7.0"), c.banner
        assert "network" in c.banner.text
    # a legitimate client on another network goes on unaffected, meanwhile
    with conn_from(b, "127.0.2.50") as c:
        assert c.banner.code == 220, c.banner
        mail(c)
        assert c.cmd(f"RCPT TO:<{KNOWN}>").code == 250
        assert c.cmd("RCPT TO:<typo@example.test>").code == 550  # one typo: told, not punished
        assert c.cmd(f"RCPT TO:<{KNOWN}>").code == 250


def test_unavailable_never_counts(backstop_factory, backend, fake):
    fv = fake(known=[KNOWN], tempfail=True)  # unknown addresses: 451 from the validation server
    b = start(backstop_factory, backend, fv, harvest_limit="2/1h", harvest_network_limit="2/1h")
    with conn_from(b, "127.0.1.60") as c:
        mail(c)
        for i in range(6):
            r = c.cmd(f"RCPT TO:<nobody-{i}@example.test>")
            assert (r.code, r.enhanced) == (451, "4.4.3"), r
        assert c.cmd(f"RCPT TO:<{KNOWN}>").code == 250
    with conn_from(b, "127.0.1.60") as c:
        assert c.banner.code == 220, c.banner
    assert "harvest: client=" not in b.log_text()


def test_budgets_survive_sighup(backstop_factory, backend, fake):
    fv = fake(known=[KNOWN])
    b = start(backstop_factory, backend, fv, harvest_limit="2/1h")
    unknowns(b, "127.0.1.70", 1, "before")
    m = b.mark()
    b.send_signal(signal.SIGHUP)
    b.wait_log(r"configuration reloaded", start=m)
    unknowns(b, "127.0.1.70", 1, "after")  # the second one trips the budget counted before
    b.wait_log(r"budget=a:127\.0\.1\.70 reached: 2 unknown recipients")
    m = b.mark()
    b.send_signal(signal.SIGHUP)
    b.wait_log(r"configuration reloaded", start=m)
    with conn_from(b, "127.0.1.70") as c:  # the penalty survives a reload too
        assert (c.banner.code, c.banner.enhanced) == (421, "4.7.0"), c.banner


def test_tarpit_holds_no_worker(backstop_factory, backend, fake):
    fv = fake(known=[KNOWN])
    b = start(backstop_factory, backend, fv, workers=1, harvest_limit="1/1h", harvest_tarpit="3s",
              harvest_penalty="0s")
    unknowns(b, "127.0.1.80", 1, "t")
    slow = conn_from(b, "127.0.1.80")  # no penalty: the session opens, its RCPTs are tarpitted
    try:
        mail(slow)
        slow.send("".join(f"RCPT TO:<x{i}@example.test>\r\n" for i in range(20)))
        time.sleep(0.1)  # let the tarpitted RCPTs reach the single worker (not a synchronisation)
        with conn_from(b, "127.0.2.80") as c:
            t0 = time.monotonic()
            mail(c)
            assert c.cmd(f"RCPT TO:<{KNOWN}>").code == 250
            assert time.monotonic() - t0 < 1.5
        codes = [slow.reply().code for _ in range(20)]
        assert set(codes) == {450}, codes
    finally:
        slow.close()


def test_callout_max_rate_holds_under_a_flood(backstop_factory, backend, fake):
    fv = fake(known=[KNOWN])
    lock = threading.Lock()
    times = fv.record_times("f", time.monotonic)  # the flood's addresses (not the domain's catch-all check)
    rate, duration = 20, 2.5
    b = backstop_factory(gateway={"harvest_limit": "0", "harvest_network_limit": "0", "max_errors": 100000,
                                  "error_delay": "0s", "callout_max_rate": rate, "callout_max_connections": 4},
                         domains={"example.test": {"deliver": backend.addr, "verify": f"callout:{fv.addr}",
                                                   "on_unavailable": "accept"}})
    codes = []
    t0 = time.monotonic()

    def flood(k):
        with conn_from(b, f"127.0.3.{k + 1}", timeout=20) as c:
            mail(c)
            burst = 0
            while time.monotonic() - t0 < duration:
                c.send("".join(f"RCPT TO:<f{k}-{burst}-{i}@example.test>\r\n" for i in range(40)))
                got = [c.reply() for _ in range(40)]
                burst += 1
                with lock:
                    codes.extend((r.code, r.enhanced) for r in got)
    threads = [threading.Thread(target=flood, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    elapsed = time.monotonic() - t0
    refused = sum(1 for c in codes if c == (451, "4.4.3"))  # even with on_unavailable = accept
    answered = sum(1 for c in codes if c[0] == 550)
    assert refused + answered == len(codes), set(codes)
    ts = sorted(times)
    assert len(ts) == answered
    # the server got probes all along (tokens come back), never more than the rate
    assert rate * (duration - 1) <= len(ts) <= rate * (elapsed + 1), (len(ts), elapsed)
    assert refused > 10 * len(ts), (refused, len(ts))
    # in no window of (a bit under) a second did the validation server see more than the rate
    j = 0
    for i in range(len(ts)):
        while ts[i] - ts[j] >= 0.95:
            j += 1
        assert i - j + 1 <= rate, f"{i - j + 1} probes within 0.95 s"
    assert b.wait_log(r"rate_limited=yes")
