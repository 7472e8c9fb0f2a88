"""The SMTP core over the wire with a raw client: banner, EHLO, the transaction verbs, replies and
their enhanced status codes, and the decision log line."""
import re

import pytest

from conftest import HOSTNAME, decision_lines

EXTENSIONS = {"PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "SMTPUTF8"}


def ext_keywords(reply):
    return {l.split(" ", 1)[0].upper() for l in reply.lines[1:]}


def test_banner(backstop):
    with backstop.connect() as c:
        assert c.banner.code == 220
        assert c.banner.lines[-1].startswith(f"{HOSTNAME} ESMTP backstop"), c.banner


def test_ehlo_extensions(backstop_factory):
    b = backstop_factory(gateway={"max_message_size": "10M"})
    with b.connect() as c:
        r = c.ehlo()
        assert r.lines[0].startswith(HOSTNAME), r
        kw = ext_keywords(r)
        assert EXTENSIONS <= kw, r
        assert "STARTTLS" not in kw, "STARTTLS offered without tls_cert/tls_key"
        size = [l for l in r.lines[1:] if l.upper().startswith("SIZE")]
        assert size == [f"SIZE {10 * 1024 * 1024}"], r


def test_helo(backstop):
    with backstop.connect() as c:
        r = c.cmd("HELO client.test")
        assert r.code == 250 and len(r.lines) == 1, r
        assert c.cmd("MAIL FROM:<a@client.test>").code == 250


# Issue 9 item 4: the HELO/EHLO argument is a domain or an address literal (RFC 5321 4.1.1.1).
FORGED_HELO = "good.example (mail.bank.example [203.0.113.5]) by x"


def received_header(data):
    return data.split(b"\r\n\t", 1)[0]   # "Received: from NAME ([IP])"


def send_one(c, subject="helo"):
    assert c.cmd("MAIL FROM:<a@client.test>").code == 250
    assert c.cmd("RCPT TO:<user@example.test>").code == 250
    assert c.cmd("DATA").code == 354
    assert c.cmd(f"Subject: {subject}\r\n\r\nbody\r\n.").code == 250


@pytest.mark.parametrize("name", ["mx1.example.test", "mx1.example.test.", "localhost", "MY_PC",
                                  "192.0.2.7", "[192.0.2.1]", "[IPv6:2001:db8::1]"])
def test_helo_domain_or_literal_accepted(backstop, backend, name):
    with backstop.connect() as c:
        r = c.cmd(f"EHLO {name}")
        assert r.code == 250, r
        assert r.lines[0] == f"{HOSTNAME} Hello {name} [127.0.0.1]", r
        assert c.cmd(f"HELO {name}").code == 250
        send_one(c)
    assert received_header(backend.messages[0]["data"]) == \
        f"Received: from {name} ([127.0.0.1])".encode(), backend.messages[0]["data"][:200]


@pytest.mark.parametrize("arg", [FORGED_HELO, "[203.0.113.5]) by x (", "good.example [203.0.113.5]",
                                 "[192.0.2.300]", "[tag:x]", "-bad-.example", "a..b"])
def test_malformed_helo_refused(backstop, arg):
    with backstop.connect() as c:
        for verb in ("EHLO", "HELO"):
            r = c.cmd(f"{verb} {arg}")
            assert (r.code, r.enhanced) == (501, "5.5.4"), (verb, r)
        r = c.cmd("MAIL FROM:<a@client.test>")           # not greeted
        assert (r.code, r.enhanced) == (503, "5.5.1"), r
    backstop.wait_log(r"client=127\.0\.0\.1 HELO refused: .* is not a domain or an address literal")


def test_lenient_helo_shows_only_a_safe_word(backstop_factory, backend):
    b = backstop_factory(gateway={"helo_syntax": "lenient"})
    with b.connect() as c:
        r = c.cmd(f"EHLO {FORGED_HELO}")
        assert r.code == 250, r
        assert r.lines[0] == f"{HOSTNAME} Hello good.example [127.0.0.1]", r
        send_one(c, "first")
        assert c.cmd("HELO [203.0.113.5](x)").code == 250
        send_one(c, "second")
    first, second = (m["data"] for m in backend.messages)
    assert received_header(first) == b"Received: from good.example ([127.0.0.1])", first[:200]
    assert received_header(second) == b"Received: from _203.0.113.5__x_ ([127.0.0.1])", second[:200]
    for data in (first, second):
        header = data.split(b"\r\n\r\n", 1)[0].split(b"\r\nSubject:")[0]
        assert b"bank" not in header and b"203.0.113.5]" not in header, header
    assert any("helo=good.example " in l for l in b.log), b.log_text()
    assert not any("mail.bank.example [" in l and "helo=" in l for l in b.log), b.log_text()


def test_transaction_replies(backstop):
    with backstop.connect() as c:
        c.ehlo()
        r = c.cmd("MAIL FROM:<sender@client.test>")
        assert (r.code, r.enhanced) == (250, "2.1.0"), r
        r = c.cmd("RCPT TO:<user@example.test>")
        assert (r.code, r.enhanced) == (250, "2.1.5"), r
        r = c.cmd("RSET")
        assert (r.code, r.enhanced) == (250, "2.0.0"), r
        r = c.cmd("NOOP")
        assert (r.code, r.enhanced) == (250, "2.0.0"), r
        r = c.cmd("QUIT")
        assert (r.code, r.enhanced) == (221, "2.0.0"), r
        assert c.closed()


def test_null_sender_and_postmaster(backstop):
    with backstop.connect() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<>").code == 250
        r = c.cmd("RCPT TO:<postmaster>")
        assert (r.code, r.enhanced) == (250, "2.1.5"), r
        r = c.cmd("RCPT TO:<Postmaster@example.test>")
        assert r.code == 250, r


def test_vrfy_never_reveals(backstop):
    with backstop.connect() as c:
        c.ehlo()
        for who in ("user@example.test", "nobody-at-all@example.test", "root"):
            r = c.cmd(f"VRFY {who}")
            assert r.code == 252, r
            assert r.enhanced, r


def test_unknown_command(backstop):
    with backstop.connect() as c:
        r = c.cmd("FROB nicate")
        assert (r.code, r.enhanced) == (500, "5.5.1"), r


@pytest.mark.parametrize("setup,command", [
    ([], "MAIL FROM:<a@client.test>"),                   # before EHLO
    (["EHLO c.test"], "RCPT TO:<user@example.test>"),     # before MAIL
    (["EHLO c.test"], "DATA"),                            # before MAIL
    (["EHLO c.test", "MAIL FROM:<a@client.test>"], "DATA"),  # no recipient
    (["EHLO c.test", "MAIL FROM:<a@client.test>"], "MAIL FROM:<b@client.test>"),  # nested MAIL
])
def test_wrong_order(backstop, setup, command):
    with backstop.connect() as c:
        for s in setup:
            assert c.cmd(s).code == 250
        r = c.cmd(command)
        assert (r.code, r.enhanced) == (503, "5.5.1"), r


def test_data_after_refused_recipients_only(backstop):
    with backstop.connect() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@client.test>")
        assert c.cmd("RCPT TO:<x@evil.test>").code == 554
        r = c.cmd("DATA")
        assert (r.code, r.enhanced) == (503, "5.5.1"), r


@pytest.mark.parametrize("cmd,code,enh", [
    ("MAIL FROM:<a@client.test> FOO=BAR", 555, "5.5.4"),
    ("MAIL FROM:<a@client.test> BODY=9BIT", 501, "5.5.4"),   # known parameter, bad value
    ("MAIL FROM:<no-at-sign", 501, "5.1.7"),
    ("MAIL FROM:<a@@client.test>", 501, "5.1.7"),
    ("MAIL FROM:<a@client.test", 501, "5.1.7"),
])
def test_mail_refusals(backstop, cmd, code, enh):
    with backstop.connect() as c:
        c.ehlo()
        r = c.cmd(cmd)
        assert (r.code, r.enhanced) == (code, enh), r
        # the session goes on
        assert c.cmd("MAIL FROM:<a@client.test>").code == 250


@pytest.mark.parametrize("cmd,code,enh", [
    ("RCPT TO:<user@example.test> FOO=BAR", 555, "5.5.4"),
    ("RCPT TO:<user@@example.test>", 501, "5.1.3"),
    ("RCPT TO:<user@example.test", 501, "5.1.3"),
    ("RCPT TO:<>", 501, "5.1.3"),
    ("RCPT TO:<user@exa mple.test>", 501, "5.1.3"),
    ("RCPT TO:<user@-example.test>", 501, "5.1.3"),
])
def test_rcpt_refusals(backstop, cmd, code, enh):
    with backstop.connect() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@client.test>").code == 250
        r = c.cmd(cmd)
        assert (r.code, r.enhanced) == (code, enh), r
        assert c.cmd("RCPT TO:<user@example.test>").code == 250


def test_mail_dsn_and_8bitmime_params(backstop):
    with backstop.connect() as c:
        c.ehlo()
        r = c.cmd("MAIL FROM:<a@client.test> BODY=8BITMIME RET=HDRS ENVID=QQ314159 SIZE=1000")
        assert r.code == 250, r
        r = c.cmd("RCPT TO:<user@example.test> NOTIFY=NEVER ORCPT=rfc822;user@example.test")
        assert r.code == 250, r


def test_utf8_address_needs_smtputf8(backstop):
    with backstop.connect() as c:
        c.ehlo()
        r = c.cmd("MAIL FROM:<jos\u00e9@client.test>")
        assert (r.code, r.enhanced) == (553, "5.6.7"), r
        r = c.cmd("MAIL FROM:<jos\u00e9@client.test> SMTPUTF8")
        assert r.code == 250, r
        r = c.cmd("RCPT TO:<\u00fcser@example.test>")
        assert r.code == 250, r


def test_utf8_recipient_without_smtputf8(backstop):
    with backstop.connect() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@client.test>").code == 250
        r = c.cmd("RCPT TO:<\u00fcser@example.test>")
        assert (r.code, r.enhanced) == (553, "5.6.7"), r


def test_size_declared_too_big(backstop_factory):
    b = backstop_factory(gateway={"max_message_size": "10K"})
    with b.connect() as c:
        c.ehlo()
        r = c.cmd("MAIL FROM:<a@client.test> SIZE=20000")
        assert (r.code, r.enhanced) == (552, "5.3.4"), r
        assert c.cmd("MAIL FROM:<a@client.test> SIZE=1000").code == 250


def test_every_reply_has_enhanced_code(backstop_factory):
    """ENHANCEDSTATUSCODES: every reply but the greeting and EHLO/HELO carries X.Y.Z."""
    b = backstop_factory(gateway={"max_errors": 100, "max_junk_commands": 100})
    with b.connect() as c:
        c.ehlo()
        for cmd in ("NOOP", "MAIL FROM:<a@client.test>", "RCPT TO:<u@example.test>",
                    "RCPT TO:<u@evil.test>", "VRFY u", "HELP", "FROB", "RSET", "DATA",
                    "MAIL FROM:<bad", "EXPN list", "ETRN example.test", "AUTH PLAIN AAAA"):
            r = c.cmd(cmd)
            assert r.enhanced, f"{cmd!r} -> {r!r}"
            assert r.enhanced[0] == str(r.code)[0], f"class mismatch: {cmd!r} -> {r!r}"
        r = c.cmd("QUIT")
        assert r.enhanced == "2.0.0"


def test_never_250_without_a_backend(backstop_factory, dead_port):
    """The backend refuses connections: the recipient or the end of DATA gets a temporary
    failure; the message is never answered 250."""
    b = backstop_factory(domains={"example.test": {"deliver": f"127.0.0.1:{dead_port}"}})
    with b.connect() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@client.test>").code == 250
        r = c.cmd("RCPT TO:<user@example.test>")             # no backend reachable: at RCPT
        assert (r.code, r.enhanced) == (451, "4.4.1"), r
        assert c.cmd("DATA").code == 503                      # so there is no message to take
        # the session is still usable
        assert c.cmd("RSET").code == 250
        assert c.cmd("QUIT").code == 221


def test_message_delivered_inline(backstop, backend):
    """The backend's answer to the end of DATA is the client's answer; the text arrives intact."""
    with backstop.connect() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@client.test>").code == 250
        assert c.cmd("RCPT TO:<user@example.test>").code == 250
        assert c.cmd("RCPT TO:<second@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        r = c.cmd("Subject: hello\r\n\r\nline one\r\n..dot line\r\n.")
        assert (r.code, r.enhanced) == (250, "2.0.0"), r
        assert c.cmd("QUIT").code == 221
    assert len(backend.messages) == 1, backend.messages
    m = backend.messages[0]
    assert m["mail"].startswith("<sender@client.test>"), m
    assert [a.split()[0] for a in m["rcpts"]] == ["<user@example.test>", "<second@example.test>"], m
    assert b"Subject: hello\r\n" in m["data"] and b"\r\n..dot line\r\n" in m["data"], m
    assert m["data"].endswith(b"\r\n.\r\n")


def test_backend_refusal_is_relayed(backstop, backend):
    with backstop.connect() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<a@client.test>").code == 250
        r = c.cmd("RCPT TO:<unknown-person@example.test>")
        assert r.code == 550, r
        assert c.cmd("RCPT TO:<user@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        assert c.cmd("Subject: x\r\n\r\nx\r\n.").code == 250
    assert [a.split()[0] for a in backend.messages[0]["rcpts"]] == ["<user@example.test>"]


def test_decision_log_line(backstop):
    with backstop.connect() as c:
        c.ehlo("helo.client.test")
        c.cmd("MAIL FROM:<sender@client.test>")
        c.cmd("RCPT TO:<user@example.test>")
        c.cmd("RCPT TO:<user@evil.test>")
        c.cmd("QUIT")
    ok = backstop.wait_log(r"rcpt=<user@example\.test>.*code=250")
    line = ok.string
    for key in ("session=", "client=127.0.0.1", "helo=helo.client.test", "from=<sender@client.test>",
                "status=2.1.5", "reason="):
        assert key in line, line
    bad = backstop.wait_log(r"rcpt=<user@evil\.test>.*code=554").string
    assert "status=5.7.1" in bad and 'reason="' in bad, bad
    sid_ok = re.search(r"session=(\S+)", line).group(1)
    sid_bad = re.search(r"session=(\S+)", bad).group(1)
    assert sid_ok == sid_bad


def test_sessions_get_distinct_ids(backstop):
    for _ in range(2):
        with backstop.connect() as c:
            c.ehlo()
            c.cmd("MAIL FROM:<a@client.test>")
            c.cmd("RCPT TO:<user@evil.test>")
            c.cmd("QUIT")
    backstop.wait_log(r"rcpt=<user@evil\.test>", count=2)
    ids = {re.search(r"session=(\S+)", l).group(1) for l in decision_lines(backstop, rcpt="<user@evil.test>")}
    assert len(ids) == 2, ids
