"""PIPELINING (RFC 2920): a whole group in one write gets every reply, in order; and SMTP
smuggling: no bare-newline variant of the end-of-data marker ends the message early."""
import socket

import pytest

from callout_fixtures import fake  # noqa: F401  (fixture)
from conftest import SMTPConn
from peers import sink  # noqa: F401  (fixture)
from relay_fixtures import fakes  # noqa: F401  (fixture)


def read_replies(c, n):
    return [c.reply() for _ in range(n)]


def test_whole_transaction_in_one_write(backstop):
    with backstop.connect() as c:
        c.send("EHLO client.test\r\n"
               "MAIL FROM:<a@client.test>\r\n"
               "RCPT TO:<one@example.test>\r\n"
               "RCPT TO:<victim@evil.test>\r\n"
               "RCPT TO:<two@example.test>\r\n"
               "RSET\r\n"
               "MAIL FROM:<b@client.test>\r\n"
               "RCPT TO:<three@example.test>\r\n"
               "NOOP\r\n"
               "QUIT\r\n")
        got = [(r.code, r.enhanced) for r in read_replies(c, 10)]
        assert got == [(250, ""), (250, "2.1.0"), (250, "2.1.5"), (554, "5.7.1"), (250, "2.1.5"),
                       (250, "2.0.0"), (250, "2.1.0"), (250, "2.1.5"), (250, "2.0.0"),
                       (221, "2.0.0")], got
        assert c.closed()


def test_pipelined_data_group(backstop):
    with backstop.connect() as c:
        c.ehlo()
        c.send("MAIL FROM:<a@client.test>\r\nRCPT TO:<u@example.test>\r\nDATA\r\n")
        got = [r.code for r in read_replies(c, 3)]
        assert got == [250, 250, 354], got
        c.send("Subject: p\r\n\r\nbody\r\n.\r\nNOOP\r\nQUIT\r\n")
        end, noop, quit_ = read_replies(c, 3)
        assert (end.code, end.enhanced) == (250, "2.0.0"), end   # the backend's answer
        assert (noop.code, quit_.code) == (250, 221)


def test_many_commands_one_write(backstop_factory):
    b = backstop_factory(gateway={"max_junk_commands": 1000, "max_recipients": 1000})
    with b.connect() as c:
        c.ehlo()
        c.send("MAIL FROM:<a@client.test>\r\n" + "".join(
            f"RCPT TO:<u{i}@example.test>\r\n" for i in range(200)) + "QUIT\r\n")
        replies = read_replies(c, 202)
        assert replies[0].code == 250
        assert all(r.code == 250 and r.enhanced == "2.1.5" for r in replies[1:201]), replies
        assert replies[201].code == 221


# The end of data is CRLF "." CRLF and nothing else. Each of these must stay inside the message:
# the bytes after it are text, never commands.
SMUGGLE_ENDINGS = ["\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n", "\r.\r\n", "\r\n.\r", "\n.\r",
                   "\r\n.\r\r\n", "\r\n\x00.\r\n", "\r\n .\r\n", "\r\n.\x00\r\n"]

SMUGGLED = ("MAIL FROM:<smuggler@evil.test>\r\n"
            "RCPT TO:<victim@example.test>\r\n"
            "DATA\r\n"
            "Subject: smuggled\r\n\r\nsmuggled body\r\n")


@pytest.mark.parametrize("mode", ["reject", "normalise"])
@pytest.mark.parametrize("ending", SMUGGLE_ENDINGS, ids=[repr(e) for e in SMUGGLE_ENDINGS])
def test_smuggling_never_ends_data(backstop_factory, backend, mode, ending):
    b = backstop_factory(gateway={"bare_newline": mode})
    with b.connect() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@client.test>").code == 250
        assert c.cmd("RCPT TO:<user@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send("Subject: hello\r\n\r\nfirst" + ending + SMUGGLED + ".\r\n")
        end = c.reply()
        # exactly one reply for the whole message: then NOOP's, nothing from the smuggled text
        assert end.code != 354, end
        has_bare = "\n" in ending.replace("\r\n", "") or "\r" in ending.replace("\r\n", "")
        if mode == "reject" and has_bare:
            assert (end.code, end.enhanced) == (554, "5.6.0"), end
        if has_bare:  # in either mode the session ends after that reply
            assert c.closed(), end
        else:
            r = c.cmd("NOOP")
            assert (r.code, r.enhanced) == (250, "2.0.0"), (end, r)
    assert "smuggler@evil.test" not in b.log_text(), b.log_text()
    # the backend saw at most this one message, never a second transaction
    assert len(backend.messages) <= 1, backend.messages
    assert not any("smuggler" in cmd for cmd in backend.commands), backend.commands
    if backend.messages:
        assert b"smuggled body" in backend.messages[0]["data"]


def test_dot_stuffing_is_not_end(backstop, backend):
    with backstop.connect() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@client.test>")
        c.cmd("RCPT TO:<u@example.test>")
        assert c.cmd("DATA").code == 354
        c.send("Subject: x\r\n\r\n..\r\n..NOOP\r\n.\r\n")
        end = c.reply()
        assert end.code == 250, end
        assert c.cmd("NOOP").code == 250
    # re-stuffed towards the backend exactly as received
    assert backend.messages[0]["data"].endswith(b"\r\n..\r\n..NOOP\r\n.\r\n"), backend.messages


# ---------------------------------------------------------------------------------------------
# Issue 9 item 2: text behind DATA before backstop's 354 is a protocol violation (RFC 2920 3.1:
# DATA ends a group). It is discarded, never content nor commands, and the session ends.

def test_content_pipelined_behind_data_is_refused(backstop, backend):
    with backstop.connect() as c:
        c.ehlo()
        c.send("MAIL FROM:<a@client.test>\r\n"
               "RCPT TO:<u@example.test>\r\n"
               "DATA\r\n"
               "Subject: pipelined\r\n\r\nbody\r\n.\r\n"
               "QUIT\r\n")
        got = [(r.code, r.enhanced) for r in read_replies(c, 3)]
        assert got == [(250, "2.1.0"), (250, "2.1.5"), (554, "5.5.0")], got
        assert c.closed()
        assert c.buf == b"", f"replies after the 554: {c.buf!r}"
    assert backend.messages == [], backend.messages
    assert not any(cmd.upper().startswith("DATA") for cmd in backend.commands), backend.commands
    backstop.wait_log(r"client=127\.0\.0\.1 improper command pipelining after DATA: 37 octets")


def test_commands_behind_refused_data_never_run(backstop, backend):
    """DATA refused with 503 (no valid recipient): what was pipelined behind it is not run."""
    with backstop.connect() as c:
        c.ehlo()
        c.send("MAIL FROM:<a@client.test>\r\n"
               "RCPT TO:<unknown-user@example.test>\r\n"
               "DATA\r\n"
               "MAIL FROM:<smuggler@evil.test>\r\n"
               "RCPT TO:<victim@example.test>\r\n"
               "DATA\r\n")
        got = [(r.code, r.enhanced) for r in read_replies(c, 4)]
        assert got == [(250, "2.1.0"), (550, "5.1.1"), (503, "5.5.1"), (554, "5.5.0")], got
        assert c.closed()
        assert c.buf == b"", f"replies after the 554: {c.buf!r}"
    backstop.wait_log(r"client=127\.0\.0\.1 improper command pipelining after DATA: 69 octets")
    assert not any("smuggler" in cmd or "victim" in cmd for cmd in backend.commands), backend.commands


def test_text_sent_while_backend_ponders_data_is_refused(backstop_factory, fakes):
    """Bytes that arrive after DATA while backstop still waits for the backend's 354 (so before
    the client could have seen ours) count too: the backend never gets them as content."""
    fb = fakes(faults={"data": "hold"})
    b = backstop_factory(domains={"example.test": {"deliver": fb.addr}})
    with b.connect() as c:
        c.ehlo()
        c.send("MAIL FROM:<a@client.test>\r\nRCPT TO:<u@example.test>\r\nDATA\r\n")
        assert [r.code for r in read_replies(c, 2)] == [250, 250]
        fb.wait_for(lambda f: "data" in f.faulted)     # the backend has DATA and holds its 354
        c.send("Subject: early\r\n\r\nbody\r\n.\r\n")
        fb.release.set()
        r = c.reply()
        assert (r.code, r.enhanced) == (554, "5.5.0"), r
        assert c.closed()
    b.wait_log(r"client=127\.0\.0\.1 improper command pipelining after DATA: 27 octets")
    fb.wait_for(lambda f: f.active == 0)
    assert fb.messages == [], [bytes(m.raw) for m in fb.messages]


# ---------------------------------------------------------------------------------------------
# Issue 9 item 3: one reply per command, in order, always; a slow validation server (the fake
# validator holds each RCPT until `release` is set) keeps RCPT replies owed.

def slow_validation(backstop_factory, fake, sink, **gateway):
    v = fake(known=["alice@example.test", "bob@example.test"], rcpt_delay=60.0)
    gw = {"verify_timeout": "90s", "callout_timeout": "90s"}
    gw.update(gateway)
    b = backstop_factory(gateway=gw, domains={"example.test": {
        "deliver": sink.addr, "verify": f"callout:{v.addr}"}})
    return v, b


def test_421_for_errors_waits_for_owed_rcpt_replies(backstop_factory, fake, sink):
    v, b = slow_validation(backstop_factory, fake, sink, max_errors=3)
    with b.connect() as c:
        c.ehlo()
        c.send("MAIL FROM:<a@client.test>\r\n"
               "RCPT TO:<alice@example.test>\r\n" +
               "RCPT TO:<broken\r\n" * 3 +
               "NOOP\r\n")
        assert c.reply().code == 250
        v.wait_rcpt(lambda n: sum(n.values()) >= 1)  # held: the catch-all probe or alice
        v.release.set()
        got = [(r.code, r.enhanced) for r in read_replies(c, 5)]
        assert got == [(250, "2.1.5")] + [(501, "5.1.3")] * 3 + [(421, "4.7.0")], got
        assert c.closed()
        assert c.buf == b"", f"replies after the 421: {c.buf!r}"


def test_line_too_long_waits_its_turn(backstop_factory, fake, sink):
    v, b = slow_validation(backstop_factory, fake, sink)
    with b.connect() as c:
        c.ehlo()
        c.send("MAIL FROM:<a@client.test>\r\n"
               "RCPT TO:<alice@example.test>\r\n"
               "RCPT TO:<nobody@example.test>\r\n"
               "NOOP " + "x" * 2000 + "\r\n"
               "RCPT TO:<bob@example.test>\r\n"
               "QUIT\r\n")
        assert c.reply().code == 250
        v.wait_rcpt(lambda n: sum(n.values()) >= 1)  # held: the catch-all probe or alice
        v.release.set()
        got = [(r.code, r.enhanced) for r in read_replies(c, 5)]
        assert got == [(250, "2.1.5"), (550, "5.1.1"), (500, "5.5.2"), (250, "2.1.5"),
                       (221, "2.0.0")], got
        assert c.closed()


def test_half_close_still_gets_owed_replies(backstop_factory, fake, sink):
    v, b = slow_validation(backstop_factory, fake, sink)
    with b.connect() as c:
        c.ehlo()
        c.send("MAIL FROM:<a@client.test>\r\n"
               "RCPT TO:<alice@example.test>\r\n"
               "RCPT TO:<nobody@example.test>\r\n"
               "RCPT TO:<bob@example.test>\r\n")
        c.sock.shutdown(socket.SHUT_WR)
        assert c.reply().code == 250
        v.wait_rcpt(lambda n: sum(n.values()) >= 1)  # held: the catch-all probe or alice
        b.wait_log(r"client=127\.0\.0\.1 (half-closed|lost connection)")  # EOF seen
        v.release.set()
        got = [(r.code, r.enhanced) for r in read_replies(c, 3)]
        assert got == [(250, "2.1.5"), (550, "5.1.1"), (250, "2.1.5")], got
        assert c.closed()
