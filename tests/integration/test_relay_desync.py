"""Never tell a client something the backend did not say (issue 9). (A) A backend out of step,
one reply more than it owes (a line after its greeting, a second reply to MAIL, one too many
for a pipelined group): backstop fails that backend connection at once, the client's RCPT gets
451 4.4.x instead of a reply the backend gave to another command, the connection is never
reused, and the log names the backend and what it sent. (B) Once the backend has the final dot,
a missing reply (timeout, close) is an unknown outcome: the client gets no reply at all (a 4xx
would make its retry a certain duplicate if the backend took the message); before the dot
(the link failed mid-content) it stays 451 4.4.2."""
import pytest

from relay_fixtures import deliver, fakes, message, open_data, relay_gateway, stuff  # noqa: F401

NO_PIPELINING = ("SIZE 0", "8BITMIME", "ENHANCEDSTATUSCODES", "DSN", "SMTPUTF8")

# (what the faulty backend does on its first connection, its EHLO keywords, the client's RCPT
# answer, what the log quotes)
DESYNC = {
    "after-banner": ({"banner": "220 fake.backend.test ESMTP\r\n250 2.0.0 unsolicited"}, None,
                     (451, "4.4.1"), "250 2.0.0 unsolicited"),
    "after-mail-lockstep": ({"mail": "250 2.1.0 Ok\r\n550 5.7.1 said to nobody"}, NO_PIPELINING,
                            (451, "4.4.2"), "550 5.7.1 said to nobody"),
    "pipelined-group": ({"rcpt": "250 2.1.5 Ok\r\n550 5.7.1 said to nobody"}, None,
                        (451, "4.4.2"), "550 5.7.1 said to nobody"),
}


@pytest.mark.parametrize("case", sorted(DESYNC))
def test_backend_out_of_step(backstop_factory, fakes, case):
    faults, exts, want, quoted = DESYNC[case]
    fb = fakes(faults=faults, fault_connections=1, **({"exts": exts} if exts else {}))
    # pooling on: a connection that went out of step must still never be reused
    b = backstop_factory(gateway=relay_gateway(backend_idle_timeout="30s"),
                         domains={"example.test": {"deliver": fb.addr}})
    with b.connect() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@client.test>").code == 250
        r = c.cmd("RCPT TO:<alice@example.test>")
        assert (r.code, r.enhanced) == want, r  # never the reply the backend gave elsewhere
        assert c.cmd("QUIT").code == 221
    b.wait_log(r"backend 127\.0\.0\.1:%d: out of step: server sent \"%s\"" % (fb.port, quoted))
    # the next session delivers normally, over a fresh connection
    o = deliver(b, "bob@example.test", message("after the desync"))
    assert o.delivered, o
    assert fb.connections == 2
    assert [m.rcpts for m in fb.acked] == [["<bob@example.test>"]]


@pytest.mark.parametrize("action", ["stall", "close"])
def test_no_reply_when_backend_never_answers_the_dot(backstop_factory, fakes, action):
    fb = fakes(faults={"dot": action})  # reads the whole message, then never answers
    b = backstop_factory(gateway=relay_gateway(backend_data_timeout="1s"),
                         domains={"example.test": {"deliver": fb.addr}})
    with open_data(b) as c:
        c.send(stuff(message("unknown outcome")) + b".\r\nNOOP\r\n")
        assert c.closed(timeout=15) and c.buf == b"", c.buf  # no 451, no 250: nothing at all
    assert len(fb.messages) == 1
    b.wait_log(r"client=127\.0\.0\.1 outcome unknown: backend 127\.0\.0\.1:%d did not answer the end "
               r"of data \(.+\); closing without a reply; the client will retry; a duplicate is "
               r"possible" % fb.port)


def test_451_when_backend_closes_mid_content(backstop_factory, fakes):
    fb = fakes(faults={"body": "close"}, body_fault_after=65536)
    b = backstop_factory(gateway=relay_gateway(), domains={"example.test": {"deliver": fb.addr}})
    with open_data(b) as c:
        c.send(stuff(message("cut short", ["y" * 998] * 256)))
        fb.wait_for(lambda f: "body" in f.faulted and f.active == 0)
        c.send(b".\r\n")  # the backend is gone before it could have the final dot
        r = c.reply()
        assert (r.code, r.enhanced) == (451, "4.4.2"), r
        assert c.cmd("NOOP").code == 250  # the client session goes on
    assert not fb.messages
