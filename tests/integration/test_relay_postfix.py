"""In-line delivery to a real Postfix (private instance, virtual Maildir mailboxes): Postfix's
RCPT refusals reach the client at RCPT, accepted messages land in the mailbox byte for byte
(apart from the Received:/Return-Path/Delivered-To headers added on the way), the backend
session is reused across transactions, and STARTTLS towards Postfix (may, must with a CA)."""
import pytest

from postfix_fixture import Postfix, postfix, received_headers, strip_added_headers  # noqa: F401
from relay_fixtures import deliver, ip_tls_files, message, relay_gateway, transaction  # noqa: F401


def start(backstop_factory, pf, **domain_keys):
    return backstop_factory(gateway=relay_gateway(backend_command_timeout="10s",
                                                  backend_data_timeout="20s"),
                            domains={"example.test": {"deliver": pf.addr, **domain_keys}})


def lf(b):
    return b.replace(b"\r\n", b"\n")


CONTENT = message("through postfix", [
    "Plain line.",
    "",
    ".starts with a dot",
    "..starts with two dots",
    ".",
    "From the start of a line (mbox would quote it)",
    "\ttab-indented line",
    "trailing spaces   ",
    "x" * 900,
    "=?utf-8?q?encoded?= words stay as they are",
    "last line",
], extra_headers=("X-Folded: first part", "\tsecond part"))


def test_unknown_user_refused_at_rcpt(backstop_factory, postfix):
    b = start(backstop_factory, postfix)
    with b.connect() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@client.test>").code == 250
        r = c.cmd("RCPT TO:<nosuchuser@example.test>")
        assert (r.code, r.enhanced) == (550, "5.1.1"), r
        assert "nosuchuser@example.test" in r.text and "User unknown" in r.text, r
        r = c.cmd("RCPT TO:<alice@example.test>")
        assert (r.code, r.enhanced) == (250, "2.1.5"), r


def test_delivered_byte_for_byte(backstop_factory, postfix):
    b = start(backstop_factory, postfix)
    o = deliver(b, "alice@example.test", CONTENT)
    assert o.delivered, o
    assert "queued as" in o.final.text, o  # Postfix's own final reply
    (got,) = postfix.wait_messages("alice", 1)
    assert strip_added_headers(got) == lf(CONTENT)
    rec = received_headers(got)
    assert len(rec) == 2, rec  # Postfix's, then backstop's
    assert b"(backstop)" in rec[1] and b"for <alice@example.test>" in rec[1], rec
    assert b"by backend.pf.test" in rec[0], rec


def test_session_reused_for_next_transactions(backstop_factory, postfix):
    b = start(backstop_factory, postfix)
    with b.connect() as c:
        c.ehlo()
        for i in range(3):
            o = transaction(c, ["alice@example.test", "bob@example.test"], message(f"reuse {i}"))
            assert o.delivered, o
        o = transaction(c, ["nosuchuser@example.test", "bob@example.test"], message("mixed"))
        assert o.rcpts[0].code == 550 and o.delivered, o
        c.cmd("QUIT")
    assert len(postfix.wait_messages("alice", 3)) == 3
    bob = postfix.wait_messages("bob", 4)
    assert b"Subject: mixed" in bob[-1] or any(b"Subject: mixed" in m for m in bob)
    # one smtpd session carried all four transactions (the other connect is the fixture's probe)
    sessions = [l for l in postfix.log().splitlines() if "disconnect from" in l and "mail=" in l]
    assert len(sessions) == 1 and " mail=4 " in sessions[0], sessions


def test_rset_mirrored_to_postfix(backstop_factory, postfix):
    b = start(backstop_factory, postfix)
    with b.connect() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<first@client.test>")
        assert c.cmd("RCPT TO:<alice@example.test>").code == 250
        assert c.cmd("RSET").code == 250
        o = transaction(c, "bob@example.test", message("after rset"), mail_from="second@client.test")
        assert o.delivered, o
    (got,) = postfix.wait_messages("bob", 1)
    assert got.startswith(b"Return-Path: <second@client.test>")
    assert postfix.messages("alice") == []


def test_starttls_may_to_postfix(backstop_factory, postfix):
    b = start(backstop_factory, postfix)
    assert deliver(b, "alice@example.test").delivered
    (got,) = postfix.wait_messages("alice", 1)
    assert b"using TLS" in received_headers(got)[0], received_headers(got)[0]


@pytest.fixture
def postfix_ip_cert(ip_tls_files):
    ca, cert, key = ip_tls_files
    pf = Postfix(tls_files=(cert, key))
    yield pf
    pf.stop()


def test_starttls_must_verified_to_postfix(backstop_factory, postfix_ip_cert, ip_tls_files):
    pf = postfix_ip_cert
    b = start(backstop_factory, pf, deliver_tls="must", deliver_tls_ca=ip_tls_files[0])
    o = deliver(b, "alice@example.test")
    assert o.delivered, o
    (got,) = pf.wait_messages("alice", 1)
    assert b"using TLS" in received_headers(got)[0]


def test_starttls_must_wrong_ca_never_delivered(backstop_factory, postfix_ip_cert, tls_files):
    pf = postfix_ip_cert
    b = start(backstop_factory, pf, deliver_tls="must", deliver_tls_ca=tls_files[0])
    o = deliver(b, "alice@example.test")
    assert o.rcpts[0].code == 451, o
    pf.wait_idle()
    assert pf.messages("alice") == []


def test_starttls_must_not_offered_by_postfix(backstop_factory, tmp_path):
    pf = Postfix()  # no TLS at all
    try:
        b = start(backstop_factory, pf, deliver_tls="must")
        o = deliver(b, "alice@example.test")
        assert o.rcpts[0].code == 451, o
        assert "MAIL FROM" not in pf.log()
        pf.wait_idle()
        assert pf.messages("alice") == []
    finally:
        pf.stop()


def test_longest_legal_orcpt_reaches_postfix(backstop_factory, postfix):
    # issue 9 item 7: RFC 3461 allows ORCPT values of 500 octets and RCPT lines 500 octets longer
    # than 512; backstop accepted such a line but its outbound client refused to send more than
    # 510 octets and dropped the backend link, losing the recipient accepted before it
    b = start(backstop_factory, postfix)
    tail = "+2Bfrom-a-list@old-domain.example"  # xtext: "+2B" is a '+'
    orcpt = "rfc822;" + "x" * (500 - len("rfc822;") - len(tail)) + tail
    assert len(orcpt) == 500
    line = f"RCPT TO:<bob@example.test> NOTIFY=FAILURE,DELAY ORCPT={orcpt}"
    assert len(line) > 510
    with b.connect() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@client.test>").code == 250
        r = c.cmd("RCPT TO:<alice@example.test>")
        assert (r.code, r.enhanced) == (250, "2.1.5"), r
        r = c.cmd(line)
        assert (r.code, r.enhanced) == (250, "2.1.5"), r
        assert c.cmd("DATA").code == 354
        c.send(message("long orcpt") + b".\r\n")
        r = c.reply()
        assert r.code == 250 and "queued as" in r.text, r
        c.cmd("QUIT")
    (a,) = postfix.wait_messages("alice", 1)
    (bo,) = postfix.wait_messages("bob", 1)
    assert b"Subject: long orcpt" in a and b"Subject: long orcpt" in bo
    # one backend transaction carried both recipients
    assert postfix.log().count("nrcpt=2") == 1, postfix.log()
