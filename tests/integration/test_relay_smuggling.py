"""SMTP smuggling through backstop: a client ends its content with a non-standard end-of-data
(bare CR or LF around the dot) and follows it with a second, smuggled transaction, then the real
<CRLF>.<CRLF>. Whatever the variant, the backend (a lenient fake, and a real Postfix with
smtpd_forbid_bare_newline = no) never sees two messages, nothing backstop forwards has a bare CR
or LF, and the client never gets two 250s. With bare_newline = reject (the default) the message
is refused (554 5.6.0) and never completed at the backend; with normalise it is one message.
Either way the session ends after the reply to a message that held a bare CR or LF."""
import socket
import time

import pytest

from postfix_fixture import Postfix
from relay_fixtures import fakes, message, relay_gateway, transaction  # noqa: F401

VARIANTS = [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r", b"\n.\r",
            b"\r.\n", b"\r\n.\r\r\n", b"\r\r\n.\r\r\n", b"\r\n\x00.\r\n", b"\n\n.\n\n",
            b"\r\n.\n\r\n", b"\n.\n\r\n"]
IDS = [v.decode("latin-1").replace("\r", "CR").replace("\n", "LF").replace("\x00", "NUL")
       for v in VARIANTS]


def smuggled(rcpt):
    return (b"MAIL FROM:<attacker@evil.test>\r\n"
            b"RCPT TO:<" + rcpt.encode() + b">\r\n"
            b"DATA\r\n"
            b"From: <ceo@example.test>\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n")


def payload(variant, rcpt):
    head = message("carrier", ["carrier body"]).rstrip(b"\r\n")
    return head + variant + smuggled(rcpt) + b"\r\n.\r\n"


def all_replies(c, timeout=15.0):
    """Every reply until the server closes the connection (after our QUIT)."""
    out = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            out.append(c.reply())
        except (ConnectionError, socket.timeout, OSError):
            break
        if out[-1].code == 221:
            break
    return out


def attack(b, variant, rcpt_first, rcpt_smuggled):
    with b.connect(timeout=15) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@client.test>").code == 250
        r = c.cmd(f"RCPT TO:<{rcpt_first}>")
        assert r.code == 250, r
        assert c.cmd("DATA").code == 354
        c.send(payload(variant, rcpt_smuggled) + b"QUIT\r\n")
        return all_replies(c)


def refused(variant, mode):
    """Does backstop refuse this content? Only bare CR/LF is refused, and only in reject mode."""
    return mode == "reject" and bool(bare(b"x\r\n" + variant + b"x\r\n"))


def check_client(replies, refuse, variant):
    codes = [r.code for r in replies]
    assert codes.count(250) <= 1, f"client got several 250s: {replies}"
    assert 354 not in codes, f"a smuggled DATA was answered: {replies}"
    if bare(b"x\r\n" + variant + b"x\r\n"):  # the session ends after the reply: QUIT is not read
        assert len(replies) == 1, replies
    else:
        assert len(replies) == 2 and replies[-1].code == 221, replies
    final = replies[0]
    if refuse:
        assert (final.code, final.enhanced) == (554, "5.6.0"), replies
    else:
        assert final.code == 250, replies


def bare(raw):
    """Offsets of CR not followed by LF, or LF not preceded by CR."""
    bad = [i for i in range(len(raw)) if raw[i] == 0x0D and raw[i + 1:i + 2] != b"\n"]
    bad += [i for i in range(len(raw)) if raw[i] == 0x0A and (i == 0 or raw[i - 1] != 0x0D)]
    return bad


@pytest.mark.parametrize("mode", ["reject", "normalise"])
@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_smuggling_fake_backend(backstop_factory, fakes, variant, mode):
    fb = fakes()
    b = backstop_factory(gateway=relay_gateway(bare_newline=mode),
                         domains={"example.test": {"deliver": fb.addr}})
    replies = attack(b, variant, "user@example.test", "victim@example.test")
    check_client(replies, refused(variant, mode), variant)
    fb.wait_for(lambda f: f.active == 0)
    assert len(fb.messages) <= 1, [bytes(m.raw) for m in fb.messages]
    rcpts = [r for m in fb.messages for r in m.rcpts]
    assert "<victim@example.test>" not in rcpts
    assert not [c for c in fb.commands if "attacker@evil.test" in c], fb.commands
    if refused(variant, mode):
        assert fb.messages == [], "a refused message was completed at the backend"
    else:
        (m,) = fb.messages
        assert m.acked and not bare(bytes(m.raw)), bytes(m.raw)
        assert b"smuggled body" in bytes(m.raw)  # it is content of the one message


@pytest.fixture(scope="module")
def shared_postfix():
    pf = Postfix(users=("alice", "bob", "victim"))
    yield pf
    pf.stop()


@pytest.mark.parametrize("mode", ["reject", "normalise"])
@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_smuggling_postfix_backend(backstop_factory, shared_postfix, variant, mode):
    pf = shared_postfix
    before = {u: len(pf.messages(u)) for u in ("alice", "bob", "victim")}
    b = backstop_factory(gateway=relay_gateway(bare_newline=mode, backend_command_timeout="10s",
                                               backend_data_timeout="20s"),
                         domains={"example.test": {"deliver": pf.addr}})
    replies = attack(b, variant, "alice@example.test", "victim@example.test")
    check_client(replies, refused(variant, mode), variant)
    # a marker message afterwards: once it is delivered and the queue is empty, everything
    # Postfix accepted from the attack has been delivered too
    with b.connect() as c:
        c.ehlo()
        assert transaction(c, "bob@example.test", message("marker")).delivered
    pf.wait_messages("bob", before["bob"] + 1)
    after = {u: len(pf.messages(u)) for u in ("alice", "bob", "victim")}
    assert after["victim"] == before["victim"], "the smuggled message was delivered"
    want_alice = before["alice"] + (0 if refused(variant, mode) else 1)
    assert after["alice"] == want_alice, (before, after)
    if not refused(variant, mode):
        got = pf.messages("alice")[-1]
        assert b"smuggled body" in got and b"Subject: carrier" in got


# ---------------------------------------------------------------------------------------------
# Issue 9 item 1: after a message that held a bare CR or LF, nothing more of the connection is a
# command. Each stream below is message content (after the 354) with a framing anomaly, content
# the sender may have meant as commands, the real end of data, and behind it a second
# transaction (TAIL) that must never run: the client gets exactly one reply (554 5.6.0 in reject
# mode, the backend's 250 in normalise mode) and then the end of the connection. Each stream is
# sent in one write and split in two at every byte up to the start of TAIL; one backstop and one
# fake backend serve every run of a mode.

INNER = b"MAIL FROM:<in@evil.test>\r\n"
TAIL = b"MAIL FROM:<tail@evil.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\ntail\r\n.\r\nQUIT\r\n"
ANOMALIES = [v for v in VARIANTS if bare(b"x\r\n" + v + b"x\r\n")] + [
    b"\nbare LF inside the text\r\n", b"text with a bare CR\rinside\r\n", b"\r\r\n", b"\n\r\n",
    b"\r\n.\r\r\n.\n", b"\r\n..\n", b"\r\n.\rx\r\n", b"\r\n\r", b"\n.", b"\r."]
STARTS = [b".\n", b".\r", b"\n", b"\r", b".\r\r\n"]   # an anomaly on the very first line


def framing_streams():
    out = [b"x" + a + INNER + b"\r\n.\r\n" for a in ANOMALIES]
    out += [s + INNER + b"\r\n.\r\n" for s in STARTS]
    for s in out:  # each is one message with a bare CR or LF: only its last CRLF.CRLF ends it
        assert s.find(b"\r\n.\r\n") == len(s) - 5 and bare(s), s
    return out


def one_message(b, stream, split):
    """EHLO, one transaction whose content is stream + TAIL (split in two writes at split, or
    one write), and every reply until the connection ends."""
    with b.connect(timeout=15) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@client.test>").code == 250
        assert c.cmd("RCPT TO:<user@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        data = stream + TAIL
        try:
            if split:
                c.send(data[:split])
            c.send(data[split:])
        except OSError:
            pass  # backstop may already have closed after the real end
        return all_replies(c)


@pytest.mark.parametrize("mode", ["reject", "normalise"])
def test_bare_newline_ends_session(backstop_factory, fakes, mode):
    fb = fakes()
    b = backstop_factory(gateway=relay_gateway(bare_newline=mode, backend_idle_timeout="10s"),
                         domains={"example.test": {"deliver": fb.addr}})
    want = (554, "5.6.0") if mode == "reject" else (250, "2.0.0")
    runs = 0
    for stream in framing_streams():
        # the real end of data may take the first part of what the client wrote behind it
        for split in [0] + list(range(1, len(stream) + 12)):
            replies = one_message(b, stream, split)
            runs += 1
            assert [(r.code, r.enhanced) for r in replies] == [want], (stream, split, replies)
    b.wait_log(r"session=\S+ client=127\.0\.0\.1 closing the connection: the message held a bare "
               rf"(CR|LF).* \(bare_newline={mode}\)", count=runs)
    # the fake notes each command before it answers it: all are in by now
    mails = [c for c in fb.commands if c.upper().startswith("MAIL")]
    assert mails == [mails[0]] * runs and "sender@client.test" in mails[0], mails
    assert not [c for c in fb.commands if "victim" in c or "evil.test" in c]
    if mode == "reject":
        assert fb.messages == []
    else:
        assert len(fb.messages) == runs
        for m in fb.messages:
            assert not bare(bytes(m.raw)) and b"tail" not in bytes(m.raw), bytes(m.raw)
