"""Limits: command line length, recipients, errors, junk commands, connections (total and per
IP), message size, timeouts, bare newlines, and clients that send garbage."""
import socket

import pytest

from conftest import SMTPConn
from peers import sink  # noqa: F401  (fixture)


def start_txn(c, rcpt="user@example.test"):
    c.ehlo()
    assert c.cmd("MAIL FROM:<a@client.test>").code == 250
    assert c.cmd(f"RCPT TO:<{rcpt}>").code == 250


def test_command_line_512(backstop):
    with backstop.connect() as c:
        c.ehlo()
        line = "NOOP " + "x" * (512 - 2 - 5)          # exactly 512 octets with CRLF
        assert len(line) + 2 == 512
        r = c.cmd(line)
        assert r.code == 250, r
        r = c.cmd(line + "y")                         # 513 octets
        assert (r.code, r.enhanced) == (500, "5.5.2"), r
        r = c.cmd("NOOP")                             # the rest of the long line was not executed
        assert (r.code, r.enhanced) == (250, "2.0.0"), r


def test_huge_line(backstop):
    """200 KB before the CRLF: refused once, the excess discarded (not buffered, not executed)."""
    with backstop.connect() as c:
        c.ehlo()
        c.send("MAIL FROM:<" + "a" * 200_000 + "\r\nNOOP\r\n")
        r = c.reply()
        assert (r.code, r.enhanced) == (500, "5.5.2"), r
        r = c.reply()
        assert (r.code, r.enhanced) == (250, "2.0.0"), r
    with backstop.connect() as c:                     # still serving
        assert c.banner.code == 220


def test_long_line_tail_is_not_a_command(backstop):
    """Bytes past the 512-octet limit are discarded up to the CRLF, not parsed as a command."""
    with backstop.connect() as c:
        c.ehlo()
        r = c.cmd("NOOP " + "x" * 600 + "MAIL FROM:<a@client.test>")
        assert (r.code, r.enhanced) == (500, "5.5.2"), r
        r = c.cmd("RCPT TO:<user@example.test>")
        assert (r.code, r.enhanced) == (503, "5.5.1"), r


def test_max_recipients(backstop_factory):
    b = backstop_factory(gateway={"max_recipients": 3})
    with b.connect() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@client.test>")
        for i in range(3):
            assert c.cmd(f"RCPT TO:<u{i}@example.test>").code == 250
        r = c.cmd("RCPT TO:<u4@example.test>")
        assert (r.code, r.enhanced) == (452, "4.5.3"), r
        assert c.cmd("RSET").code == 250              # a new transaction counts from zero
        c.cmd("MAIL FROM:<a@client.test>")
        assert c.cmd("RCPT TO:<u5@example.test>").code == 250


def replies_until_421(c, line, most):
    """Send line up to most times, one at a time; the replies, up to the first 421 or until the
    connection is gone."""
    replies = []
    for _ in range(most):
        try:
            replies.append(c.cmd(line))
        except (ConnectionError, OSError):
            break
        if replies[-1].code == 421:
            break
    return replies


def test_max_errors(backstop_factory):
    b = backstop_factory(gateway={"max_errors": 3, "max_junk_commands": 100})
    with b.connect() as c:
        c.ehlo()
        replies = replies_until_421(c, "MAIL FROM:<broken", 6)
        last = replies[-1]
        assert (last.code, last.enhanced) == (421, "4.7.0"), replies
        assert len(replies) <= 4, replies
        assert c.closed()


def test_max_junk_commands(backstop_factory):
    b = backstop_factory(gateway={"max_junk_commands": 5, "max_errors": 100})
    with b.connect() as c:
        c.ehlo()
        replies = replies_until_421(c, "NOOP", 12)
        last = replies[-1]
        assert (last.code, last.enhanced) == (421, "4.7.0"), replies
        assert 5 <= len(replies) <= 7, replies
        assert c.closed()


def test_per_ip_connection_limit(backstop_factory):
    b = backstop_factory(gateway={"max_connections_per_ip": 2})
    c1, c2 = b.connect(), b.connect()
    try:
        assert c1.banner.code == 220 and c2.banner.code == 220
        with b.connect() as c3:
            assert (c3.banner.code, c3.banner.enhanced) == (421, "4.7.0"), c3.banner
            assert c3.closed()
        c1.cmd("QUIT")
        assert c1.closed()
        # the slot is freed once the first session is gone (poll, bounded)
        for _ in range(50):
            with b.connect() as c4:
                if c4.banner.code == 220:
                    break
                assert c4.closed()
        else:
            pytest.fail("per-IP slot not released after QUIT")
    finally:
        c1.close()
        c2.close()


def test_total_connection_limit(backstop_factory):
    b = backstop_factory(gateway={"max_connections": 2, "max_connections_per_ip": 10})
    c1, c2 = b.connect(), b.connect()
    try:
        with b.connect() as c3:
            assert (c3.banner.code, c3.banner.enhanced) == (421, "4.7.0"), c3.banner
    finally:
        c1.close()
        c2.close()


def test_message_too_big(backstop_factory):
    b = backstop_factory(gateway={"max_message_size": "10K"})
    with b.connect() as c:
        start_txn(c)
        assert c.cmd("DATA").code == 354
        body = ("x" * 78 + "\r\n") * 200             # 16000 octets
        r = c.cmd("Subject: big\r\n\r\n" + body + ".")
        assert (r.code, r.enhanced) == (552, "5.3.4"), r
        assert c.cmd("NOOP").code == 250


def test_bare_lf_rejected(backstop):
    with backstop.connect() as c:
        start_txn(c)
        assert c.cmd("DATA").code == 354
        r = c.cmd("Subject: x\r\n\r\nline one\nline two\r\n.")
        assert (r.code, r.enhanced) == (554, "5.6.0"), r
        assert c.closed()        # after a bare LF nothing more is a command (issue 9 item 1)


def test_bare_cr_rejected(backstop):
    with backstop.connect() as c:
        start_txn(c)
        assert c.cmd("DATA").code == 354
        r = c.cmd("Subject: x\r\n\r\nline one\rline two\r\n.")
        assert (r.code, r.enhanced) == (554, "5.6.0"), r
        assert c.closed()


def test_command_timeout(backstop_factory):
    b = backstop_factory(gateway={"command_timeout": "1s"})
    with b.connect(timeout=10) as c:
        c.ehlo()
        r = c.reply()                                 # nothing sent: the server times out
        assert (r.code, r.enhanced) == (421, "4.4.2"), r
        assert c.closed()


def test_data_timeout(backstop_factory):
    b = backstop_factory(gateway={"data_timeout": "1s", "command_timeout": "30s"})
    with b.connect(timeout=10) as c:
        start_txn(c)
        assert c.cmd("DATA").code == 354
        c.send("Subject: slow\r\n\r\npartial")
        r = c.reply()
        assert (r.code, r.enhanced) == (421, "4.4.2"), r
        assert c.closed()


def test_garbage_and_nuls(backstop):
    with backstop.connect() as c:
        c.send(b"\x00\x00\x00\xff\xfe garbage \x01\x02\r\n")
        r = c.reply()
        assert (r.code, r.enhanced) == (500, "5.5.2"), r
        c.send(b"EHLO a\x00b\r\n")
        r = c.reply()
        assert (r.code, r.enhanced) == (500, "5.5.2"), r
        r = c.cmd("EHLO client.test")
        assert r.code == 250, r
        r = c.cmd("QUIT")
        assert r.code == 221
        assert c.closed()


def test_nul_flood_then_hang_up(backstop):
    with backstop.connect() as c:
        try:
            c.send(b"\x00" * 100_000 + b"\r\n" + b"\xff" * 5000)
        except OSError:
            pass
    with backstop.connect() as c:
        assert c.banner.code == 220
        assert c.cmd("QUIT").code == 221


def test_abrupt_disconnects(backstop):
    """Clients that vanish mid-command, mid-DATA or with a reset must not disturb the daemon."""
    for stage in range(4):
        c = backstop.connect()
        if stage >= 1:
            c.ehlo()
            c.cmd("MAIL FROM:<a@client.test>")
            c.cmd("RCPT TO:<user@example.test>")
        if stage >= 2:
            c.cmd("DATA")
            c.send("Subject: cut\r\n\r\nhalf a mess")
        if stage == 3:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        else:
            c.send("RCPT TO:<user@exa")
        c.close()
    with backstop.connect() as c:
        assert c.cmd("NOOP").code == 250


def test_many_sequential_sessions(backstop):
    for i in range(50):
        with SMTPConn(backstop.host, backstop.port) as c:
            assert c.cmd("QUIT").code == 221
    assert backstop.alive()


def test_1000_pipelined_rcpts_100_accepted_900_deferred_then_delivered(backstop_factory, sink):
    """Issue 9 item 3a: 452 4.5.3 past max_recipients (default 100) is flow control, not an
    error: it never counts towards max_errors, every RCPT gets its reply in order, and the
    message is delivered to the backend (smtp-sink) for the first 100."""
    b = backstop_factory(domains={"example.test": {"deliver": sink.addr}})
    with b.connect() as c:
        c.ehlo()
        c.send("MAIL FROM:<a@client.test>\r\n" +
               "".join(f"RCPT TO:<u{i}@example.test>\r\n" for i in range(1000)) + "DATA\r\n")
        mail = c.reply()
        assert mail.code == 250, mail
        got = [(r.code, r.enhanced) for r in (c.reply() for _ in range(1000))]
        assert got[:100] == [(250, "2.1.5")] * 100, got[:100]
        assert got[100:] == [(452, "4.5.3")] * 900, sorted(set(got[100:]))
        data = c.reply()
        assert data.code == 354, data
        c.send("Subject: many\r\n\r\nhello\r\n.\r\n")
        end = c.reply()
        assert (end.code, end.enhanced) == (250, "2.0.0"), end
        assert c.cmd("QUIT").code == 221
    assert not any("too many errors" in l for l in b.log), b.log_text()
