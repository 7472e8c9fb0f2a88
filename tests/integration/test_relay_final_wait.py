"""The wait for the backend's reply to the final dot (issue 9 items 5 and 6). Once the backend has
the dot it may have taken the message, so the client gets the backend's reply and nothing else:
no 451 from a stale backpressure callback that ran the end of data twice, no 421 from the
client's data_timeout while backstop waits (backend_data_timeout bounds that wait), and no 421
at the shutdown deadline of a SIGTERM (the reply is relayed, or the connection closed without
one if the backend never answers)."""
import signal

import pytest

from relay_fixtures import fakes, message, open_data, relay_gateway, stuff  # noqa: F401

LINE = "x" * 998
# Message sizes (in 1000-octet lines) on one backend link that reads slowly: the backlog passes
# 256 KiB and drains several times per message, and where the last drain falls relative to the
# final dot moves with the size, so that in some of them the dot finds a backlog above 64 KiB
# (what makes a stale drain callback fire during the wait for the final reply). Every second
# message has a command pipelined behind its dot.
SIZES = [2048 + 53 * i for i in range(12)]


def slow_backend(fakes, dot_delay):
    """Reads content at 8 MB/s through a small receive buffer, answers the dot late."""
    return fakes(body_read_rate=8 << 20, dot_delay=dot_delay)


# ---------------------------------------------------------------------------------------------
# Item 5: each pause is resumed only by the step it waits for

def test_backpressure_callback_never_wakes_final_wait(backstop_factory, fakes):
    fb = fakes(body_read_rate=4 << 20, dot_delay=0.6)
    b = backstop_factory(gateway=relay_gateway(backend_data_timeout="20s", data_timeout="200ms",
                                               backend_idle_timeout="10s"),
                         domains={"example.test": {"deliver": fb.addr}})
    sizes = []
    with b.connect(timeout=30) as c:
        c.ehlo()
        for i, n in enumerate(SIZES):
            content = message(f"big {n}", [LINE] * n)
            sizes.append(len(content))
            pipelined = b"NOOP\r\n" if i % 2 else b""
            assert c.cmd("MAIL FROM:<sender@client.test>").code == 250
            assert c.cmd("RCPT TO:<user@example.test>").code == 250
            assert c.cmd("DATA").code == 354
            c.send(stuff(content) + b".\r\n" + pipelined)  # returns once backstop read it all
            r = c.reply()  # the backend's answer, neither 451 (dot twice) nor 421 (timeout)
            assert (r.code, r.enhanced) == (250, "2.0.0"), (n, pipelined, r)
            if pipelined:
                assert c.reply().code == 250
        assert c.cmd("QUIT").code == 221
    assert fb.connections == 1 and len(fb.acked) == len(SIZES)
    assert [m.size for m in fb.messages] == sizes


# ---------------------------------------------------------------------------------------------
# Item 6: the shutdown deadline never sends 421 to a session whose dot the backend has

def test_sigterm_deadline_relays_backend_final_reply(backstop_factory, fakes):
    fb = fakes(dot_delay=3.0)  # answers the dot 2 s after the shutdown deadline
    b = backstop_factory(gateway=relay_gateway(shutdown_timeout="1s", backend_data_timeout="10s"),
                         domains={"example.test": {"deliver": fb.addr}})
    with open_data(b) as c:
        c.send(stuff(message("at shutdown")) + b".\r\n")
        fb.wait_for(lambda f: len(f.messages) == 1)  # the backend has the final dot
        b.send_signal(signal.SIGTERM)
        r = c.reply()
        assert (r.code, r.enhanced) == (250, "2.0.0"), r
        assert c.closed() and c.buf == b""
    assert b.proc.wait(15) == 0
    assert len(fb.acked) == 1
    b.wait_log(r"shutdown deadline: the backend has the message; waiting for its reply")


def test_sigterm_deadline_silent_close_when_backend_never_answers(backstop_factory, fakes):
    fb = fakes(faults={"dot": "stall"})  # takes the dot, never answers
    b = backstop_factory(gateway=relay_gateway(shutdown_timeout="1s", backend_data_timeout="2s"),
                         domains={"example.test": {"deliver": fb.addr}})
    with open_data(b) as c:
        c.send(stuff(message("never answered")) + b".\r\n")
        fb.wait_for(lambda f: "dot" in f.faulted)
        b.send_signal(signal.SIGTERM)
        assert c.closed(timeout=15) and c.buf == b"", c.buf  # no 421, no 451: nothing at all
    assert b.proc.wait(15) == 0
    b.wait_log(r"outcome unknown: backend \S+ did not answer the end of data .*; closing without a reply")
