"""Idle backend sessions kept between client sessions (backend_idle_timeout): the next client
session to the same backend reuses the open backend session instead of connecting, greeting and
saying EHLO again; with backend_idle_timeout = 0 every client session opens its own; a pooled
session the backend closed meanwhile is never used; SIGTERM says QUIT to pooled sessions."""
import signal

from conftest import BACKSTOP_BIN  # noqa: F401  (the binary under test)
from fake_backend import FakeBackend  # noqa: F401
from relay_fixtures import deliver, fakes, message, relay_gateway  # noqa: F401


def start(backstop_factory, addr, **gateway):
    gw = relay_gateway(workers=1, **{"backend_idle_timeout": "10s", **gateway})
    return backstop_factory(gateway=gw, domains={"example.test": {"deliver": addr}})


def test_next_client_session_reuses_backend_session(backstop_factory, fakes):
    fb = fakes()
    b = start(backstop_factory, fb.addr)
    for i in range(3):
        o = deliver(b, "user@example.test", message(f"pooled {i}"))
        assert o.delivered, o
    fb.wait_for(lambda f: len(f.messages) == 3)
    assert fb.connections == 1, fb.commands
    ehlos = [c for c in fb.commands if c.startswith("EHLO")]
    assert len(ehlos) == 1, fb.commands


def test_idle_timeout_zero_closes_with_the_client(backstop_factory, fakes):
    fb = fakes()
    b = start(backstop_factory, fb.addr, backend_idle_timeout="0s")
    for i in range(3):
        assert deliver(b, "user@example.test", message(f"unpooled {i}")).delivered
    fb.wait_for(lambda f: f.commands.count("QUIT") == 3)
    assert fb.connections == 3


def test_session_closed_by_backend_is_not_reused(backstop_factory, fakes):
    # the backend hangs up right after acknowledging each message: the pooled session is dead
    fb = fakes(faults={"after": "close"})
    b = start(backstop_factory, fb.addr)
    for i in range(3):
        o = deliver(b, "user@example.test", message(f"closed {i}"))
        assert o.delivered, o
    fb.wait_for(lambda f: len(f.messages) == 3)
    assert fb.connections == 3


def test_sigterm_quits_pooled_sessions(backstop_factory, fakes):
    fb = fakes()
    b = start(backstop_factory, fb.addr, backend_idle_timeout="1h")
    assert deliver(b, "user@example.test", message("then stop")).delivered
    assert b.stop(signal.SIGTERM) == 0
    fb.wait_for(lambda f: "QUIT" in f.commands)


def test_session_ending_after_sigterm_does_not_pool(backstop_factory, fakes):
    # a client session that ends after SIGTERM must not put its backend session into the
    # stopping worker's pool: it is closed with QUIT, and backstop exits cleanly
    fb = fakes()
    b = start(backstop_factory, fb.addr, backend_idle_timeout="1h")
    with b.connect() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@client.test>").code == 250
        assert c.cmd("RCPT TO:<user@example.test>").code == 250
        b.send_signal(signal.SIGTERM)
        b.wait_log("SIGTERM")
        assert c.cmd("QUIT").code == 221
    fb.wait_for(lambda f: "QUIT" in f.commands)
    assert b.stop() == 0
