"""deliver_max_connections (issue 9 item 13): backstop holds at most that many connections to one
backend, all workers together. A transaction that finds them all in use waits (at most
backend_connect_timeout) for one to be closed or given up by the pool, then gets 451 4.4.5; the
others go through. A backend that answers 421 at its greeting ("too many connections") is busy,
not down: the recipient gets 451 4.4.5 and the circuit breaker stays closed."""
import pytest

from fake_backend import FakeBackend  # noqa: F401
from relay_fixtures import deliver, fakes, message, relay_gateway, stuff, transaction  # noqa: F401


def start(backstop_factory, domains, **gateway):
    gw = relay_gateway(**{"workers": 2, **gateway})
    return backstop_factory(gateway=gw, domains=domains)


def open_rcpt(b, rcpt="user@example.test"):
    """A session whose transaction holds a backend connection (RCPT accepted, no DATA yet)."""
    c = b.connect()
    c.ehlo()
    assert c.cmd("MAIL FROM:<sender@client.test>").code == 250
    r = c.cmd(f"RCPT TO:<{rcpt}>")
    assert (r.code, r.enhanced) == (250, "2.1.5"), r
    return c


def finish(c, subject):
    """DATA and the message on a session opened by open_rcpt, then QUIT; the final reply."""
    assert c.cmd("DATA").code == 354
    c.send(stuff(message(subject)) + b".\r\n")
    final = c.reply()
    assert c.cmd("QUIT").code == 221
    c.close()
    return final


def test_transaction_over_the_cap_gets_451_after_the_wait(backstop_factory, fakes):
    fb = fakes()
    b = start(backstop_factory, {"example.test": {"deliver": fb.addr}},
              deliver_max_connections=2, backend_connect_timeout="1s")
    held = [open_rcpt(b) for _ in range(2)]
    with b.connect() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@client.test>").code == 250
        r = c.cmd("RCPT TO:<user@example.test>")
        assert (r.code, r.enhanced) == (451, "4.4.5"), r
        assert "Too many connections" in r.text, r
        # exactly one reply: the session goes on with the next command
        assert c.cmd("RSET").code == 250
    b.wait_log(r"backend 127\.0\.0\.1:\d+: no connection came free within 1000 ms "
               r"\(deliver_max_connections = 2\)")
    assert fb.connections == 2 and fb.max_active == 2
    # the transactions that got their connections go through
    for i, c in enumerate(held):
        final = finish(c, f"held {i}")
        assert (final.code, final.enhanced) == (250, "2.0.0"), final
    fb.wait_for(lambda f: len(f.acked) == 2)


@pytest.mark.parametrize("idle", ["0s", "10s"], ids=["closed", "pooled"])
def test_freed_connection_lets_a_waiter_proceed(backstop_factory, fakes, idle):
    # idle 0s: the holder's backend connection is closed when its session ends; 10s: it goes to
    # the pool, which gives it up at once because a transaction waits for it
    fb = fakes()
    b = start(backstop_factory, {"example.test": {"deliver": fb.addr}},
              deliver_max_connections=1, backend_connect_timeout="30s", backend_idle_timeout=idle)
    holder = open_rcpt(b)
    waiters = []
    for i in range(3):
        c = b.connect()
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@client.test>").code == 250
        mark = b.mark()
        c.send("RCPT TO:<user@example.test>\r\n")
        b.wait_log(r"all 1 connections in use \(deliver_max_connections\); the transaction waits",
                   start=mark)
        waiters.append(c)
    assert (finish(holder, "holder").code) == 250
    # each freed connection lets the oldest waiter go on, one at a time (across workers too)
    for i, c in enumerate(waiters):
        r = c.reply()
        assert (r.code, r.enhanced) == (250, "2.1.5"), r
        final = finish(c, f"waiter {i}")
        assert (final.code, final.enhanced) == (250, "2.0.0"), final
    fb.wait_for(lambda f: len(f.acked) == 4)
    assert fb.connections == 4  # one each, opened as the previous one was let go
    b.wait_log(r"a connection came free after \d+ ms", count=3)


def test_idle_pooled_connection_given_up_for_a_waiter(backstop_factory, fakes):
    # two domains on the same backend with different TLS policies: the idle session pooled for
    # one cannot carry the other's transaction, but it holds the only slot; the pool gives it up
    fb = fakes()
    b = start(backstop_factory,
              {"plain.test": {"deliver": fb.addr, "deliver_tls": "none"},
               "may.test": {"deliver": fb.addr, "deliver_tls": "may"}},
              workers=1, deliver_max_connections=1, backend_connect_timeout="30s",
              backend_idle_timeout="1h")
    assert deliver(b, "user@plain.test", message("first")).delivered
    o = deliver(b, "user@may.test", message("second"))
    assert o.delivered, o
    fb.wait_for(lambda f: len(f.acked) == 2)
    assert fb.connections == 2


def test_banner_421_is_busy_not_down(backstop_factory, fakes):
    # a backend that allows one connection from us answers 421 at the greeting of the others:
    # those recipients get 451 4.4.5, and the breaker (backend_retry_after 1h) does not trip
    fb = fakes(busy_over=1)
    b = start(backstop_factory, {"example.test": {"deliver": fb.addr}},
              backend_retry_after="1h")
    holder = open_rcpt(b)
    for _ in range(3):
        o = deliver(b, "user@example.test")
        assert (o.rcpts[0].code, o.rcpts[0].enhanced) == (451, "4.4.5"), o
    assert fb.faulted == ["busy"] * 3
    b.wait_log(r"backend 127\.0\.0\.1:\d+ is busy: 421 at its greeting .*not counted as a failure",
               count=3)
    assert (finish(holder, "holder").code) == 250
    # the backend was never marked as failing: the next sessions are delivered (each once the
    # fake has seen the previous connection close, or it would count it and say 421 again)
    for i in range(2):
        fb.wait_for(lambda f: f.active == 0)
        o = deliver(b, "user@example.test", message(f"after busy {i}"))
        assert o.delivered, (o, fb.faulted, b.log_text())
    assert not any("is now failing" in l for l in b.log), b.log_text()


def test_idle_client_session_lets_its_connection_go(backstop_factory, fakes):
    # a client session between transactions does not keep its backend connection from a
    # transaction that waits for one: it is closed after the final reply (or RSET), and the
    # session's next transaction waits in line in turn
    fb = fakes()
    b = start(backstop_factory, {"example.test": {"deliver": fb.addr}},
              deliver_max_connections=1, backend_connect_timeout="30s")
    a = open_rcpt(b)
    with b.connect() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@client.test>").code == 250
        mark = b.mark()
        c.send("RCPT TO:<user@example.test>\r\n")
        b.wait_log(r"the transaction waits up to 30000 ms", start=mark)
        assert a.cmd("DATA").code == 354
        a.send(stuff(message("a first")) + b".\r\n")
        assert a.reply().code == 250
        r = c.reply()  # a is still connected, but has let its backend connection go
        assert (r.code, r.enhanced) == (250, "2.1.5"), r
        b.wait_log(r"connection closed between transactions: another transaction waits")
        # a's next transaction waits for c's connection, which RSET lets go
        assert a.cmd("MAIL FROM:<sender@client.test>").code == 250
        mark = b.mark()
        a.send("RCPT TO:<user@example.test>\r\n")
        b.wait_log(r"the transaction waits up to 30000 ms", start=mark)
        assert c.cmd("RSET").code == 250
        r = a.reply()
        assert (r.code, r.enhanced) == (250, "2.1.5"), r
        assert finish(a, "a second").code == 250
        c.cmd("QUIT")
    fb.wait_for(lambda f: len(f.acked) == 2)
    assert fb.connections == 3
