"""error_delay / error_delay_after (Postfix's smtpd_error_sleep_time after smtpd_soft_error_limit):
past the soft limit each refused RCPT is answered error_delay later, replies stay in command order,
a delay holds no worker nor a backend connection, and a shutdown during one still answers the
RCPT."""
import select
import signal
import time

from test_metrics import http_get, metrics_addr, parse, value

# Relay refusals (554 5.7.1) are the errors here: no validation server is needed for them.
REFUSED = "RCPT TO:<someone@elsewhere.test>"


def pipeline(c, lines):
    c.send("".join(line + "\r\n" for line in lines))
    return [c.reply() for _ in lines]


def test_refusals_past_the_soft_limit_are_delayed_in_order(backstop_factory):
    b = backstop_factory(gateway={"error_delay_after": 2, "error_delay": "400ms", "max_errors": 100,
                                  "metrics_listen": "127.0.0.1:0"})
    with b.connect() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@client.test>").code == 250
        first = pipeline(c, [REFUSED, REFUSED])            # within the soft limit
        assert [(r.code, r.enhanced) for r in first] == [(554, "5.7.1")] * 2, first
        t0 = time.monotonic()
        replies = pipeline(c, [REFUSED, "NOOP", REFUSED, "RCPT TO:<user@example.test>", REFUSED])
        elapsed = time.monotonic() - t0
        assert [r.code for r in replies] == [554, 250, 554, 250, 554], replies
        assert elapsed >= 0.8, f"two refusals past the soft limit took only {elapsed:.3f}s"
        assert c.cmd("QUIT").code == 221
    # the third refusal came after the valid recipient: that transaction holds the backend
    assert value(parse(http_get(metrics_addr(b))[2]), "backstop_smtp_error_delays_total") == 2


def test_delay_holds_no_worker(backstop_factory):
    """One worker: while a session waits out its delay, another session delivers a message."""
    b = backstop_factory(gateway={"workers": 1, "error_delay_after": 0, "error_delay": "60s"})
    slow = b.connect()
    try:
        slow.ehlo()
        assert slow.cmd("MAIL FROM:<a@client.test>").code == 250
        slow.send(REFUSED + "\r\n")
        with b.connect() as c:
            c.ehlo()
            assert c.cmd("MAIL FROM:<b@client.test>").code == 250
            assert c.cmd("RCPT TO:<user@example.test>").code == 250
            assert c.cmd("DATA").code == 354
            assert c.cmd("Subject: t\r\n\r\nbody\r\n.").code == 250
            assert c.cmd("QUIT").code == 221
        readable, _, _ = select.select([slow.sock], [], [], 0)
        assert not readable, "the delayed refusal was answered early"
    finally:
        slow.close()


def test_no_delay_while_a_recipient_holds_the_backend(backstop_factory):
    """A transaction with a recipient accepted holds a backend connection: its refusals are not
    slowed (slowed sessions holding connections would starve other clients of the backend)."""
    b = backstop_factory(gateway={"error_delay_after": 0, "error_delay": "60s"})
    with b.connect() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@client.test>").code == 250
        assert c.cmd("RCPT TO:<user@example.test>").code == 250
        replies = pipeline(c, [REFUSED, REFUSED, "RCPT TO:<other@example.test>"])  # 60 s each if delayed
        assert [r.code for r in replies] == [554, 554, 250], replies
        assert c.cmd("RSET").code == 250
        assert c.cmd("MAIL FROM:<a@client.test>").code == 250
        c.send(REFUSED + "\r\n")                         # no recipient now: delayed again
        readable, _, _ = select.select([c.sock], [], [], 0.5)
        assert not readable, "a refusal with no backend connection held was not delayed"


def test_shutdown_during_a_delay_answers_the_rcpt(backstop_factory):
    b = backstop_factory(gateway={"error_delay_after": 0, "error_delay": "60s", "shutdown_timeout": "1s"})
    c = b.connect()
    try:
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@client.test>").code == 250
        c.send(REFUSED + "\r\n")
        b.wait_log(r"rcpt=<someone@elsewhere\.test>")   # decided; its reply now waits out the delay
        b.send_signal(signal.SIGTERM)
        assert b.proc.wait(15) == 0
        r = c.reply()                                     # owed, and never a 5xx nor silence
        assert (r.code, r.enhanced) == (421, "4.3.2"), r
        assert c.closed()
    finally:
        c.close()
