"""Relay control over the wire: every address form that could make a downstream MTA relay is
refused at RCPT, and our own domain is recognised whatever its case or trailing dot."""
import subprocess

import pytest

ACCEPTED = [
    "user@example.test",
    "user@EXAMPLE.TEST",
    "User@Example.Test",
    "first.last+tag@example.test",
    '"quoted user"@example.test',       # quoted, no routing characters
]

# (recipient, code, enhanced): relay through our domain is refused whatever the spelling.
DENIED = [
    ("user@evil.test", 554, "5.7.1"),
    ("user@EVIL.test", 554, "5.7.1"),
    ("user@sub.example.test", 554, "5.7.1"),        # subdomain is not the domain
    ("user@example.test.evil", 554, "5.7.1"),        # look-alike suffix
    ("user@evilexample.test", 554, "5.7.1"),         # look-alike prefix
    ("user@xample.test", 554, "5.7.1"),
    ("user@[127.0.0.1]", 554, "5.7.1"),              # IP literal not configured
    ("user@[IPv6:::1]", 554, "5.7.1"),
    ("user@[192.0.2.1]", 554, "5.7.1"),
    ("@example.test:user@evil.test", 554, "5.7.1"),  # source route to a foreign domain
    ("@example.test,@example.test:user@evil.test", 554, "5.7.1"),
    # routing characters in the local part of our own domain
    ("user%evil.test@example.test", 550, "5.7.1"),   # percent hack
    ("user%evil.test%example.test@example.test", 550, "5.7.1"),
    ("evil.test!user@example.test", 550, "5.7.1"),   # bang path
    ("a!b!user@example.test", 550, "5.7.1"),
    ('"user@evil.test"@example.test', 550, "5.7.1"),  # quoted @
    ('"user%evil.test"@example.test', 550, "5.7.1"),
    ('"evil.test!user"@example.test', 550, "5.7.1"),
    ('"user\\@evil.test"@example.test', 550, "5.7.1"),  # escaped @ inside quotes
    ("user/evil.test@example.test", 550, "5.7.1"),
    ("|/bin/sh@example.test", 550, "5.7.1"),
]

# Not a Mailbox of RFC 5321 4.1.2 (a trailing dot in the domain, a dot-string with a leading,
# trailing or double dot, several unquoted @): refused as syntax, 501 5.1.3, before any policy.
SYNTAX = [
    "user@evil.test.",
    "user@EVIL.TEST.",
    ".user@example.test",
    "user.@example.test",
    "us..er@example.test",
]
# Our own domain with a trailing dot: a syntax error too, never relay.
TRAILING_DOT_OURS = ["user@example.test.", "user@EXAMPLE.test."]

SEVERAL_AT = ["user@evil.test@example.test", "user@example.test@evil.test", "a@b@c@example.test"]




def rcpt(b, addr):
    with b.connect() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@client.test>").code == 250
        return c.cmd(f"RCPT TO:<{addr}>")


def test_accepted_forms(backstop):
    for addr in ACCEPTED:
        r = rcpt(backstop, addr)
        assert (r.code, r.enhanced) == (250, "2.1.5"), (addr, r)


def test_denied_forms(backstop):
    failures = []
    for addr, code, enh in DENIED:
        r = rcpt(backstop, addr)
        if (r.code, r.enhanced) != (code, enh):
            failures.append(f"<{addr}>: got {r.code} {r.enhanced!r} {r.text!r}, want {code} {enh}")
    assert not failures, "\n".join(failures)


def test_syntax_refusals(backstop):
    failures = []
    for addr in SYNTAX:
        r = rcpt(backstop, addr)
        if (r.code, r.enhanced) != (501, "5.1.3"):
            failures.append(f"<{addr}>: got {r.code} {r.enhanced!r} {r.text!r}, want 501 5.1.3")
    assert not failures, "\n".join(failures)


def test_trailing_dot_on_our_domain(backstop):
    for addr in TRAILING_DOT_OURS:
        r = rcpt(backstop, addr)
        assert (r.code, r.enhanced) == (501, "5.1.3"), (addr, r)


def test_relay_denied_text(backstop):
    r = rcpt(backstop, "user@evil.test")
    assert r.lines[-1] == "5.7.1 <user@evil.test>: Relay access denied", r


def test_several_at_signs_never_accepted(backstop):
    for addr in SEVERAL_AT:
        r = rcpt(backstop, addr)
        assert (r.code, r.enhanced) == (501, "5.1.3"), (addr, r)


def test_denial_is_logged(backstop):
    rcpt(backstop, "user%evil.test@example.test")
    line = backstop.wait_log(r"rcpt=<user%evil\.test@example\.test>").string
    assert "code=550" in line and "status=5.7.1" in line, line


def test_refused_recipient_does_not_spoil_transaction(backstop):
    with backstop.connect() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<sender@client.test>")
        assert c.cmd("RCPT TO:<user@evil.test>").code == 554
        assert c.cmd("RCPT TO:<user@example.test>").code == 250
        assert c.cmd("DATA").code == 354


def test_second_domain(backstop_factory, backend):
    b = backstop_factory(domains={
        "example.test": {"deliver": backend.addr},
        "other.test": {"deliver": backend.addr},
    })
    assert rcpt(b, "user@other.test").code == 250
    assert rcpt(b, "user@example.test").code == 250
    assert rcpt(b, "user@third.test").code == 554


def swaks(b, *args):
    return subprocess.run(["swaks", "--server", f"{b.host}:{b.port}", "--helo", "client.test",
                           "--from", "sender@client.test", "--timeout", "10", *args],
                          capture_output=True, text=True, timeout=30)


def test_swaks_accepted_recipient(backstop):
    r = swaks(backstop, "--to", "user@example.test", "--quit-after", "RCPT")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "250 2.1.5" in r.stdout


def test_swaks_relay_refused(backstop):
    r = swaks(backstop, "--to", "victim@evil.test", "--quit-after", "RCPT")
    assert r.returncode != 0, r.stdout
    assert "554 5.7.1 <victim@evil.test>: Relay access denied" in r.stdout, r.stdout


def test_swaks_percent_hack_refused(backstop):
    r = swaks(backstop, "--to", "victim%evil.test@example.test", "--quit-after", "RCPT")
    assert r.returncode != 0, r.stdout
    assert "550 5.7.1" in r.stdout, r.stdout


def test_swaks_full_message_delivered_inline(backstop, backend):
    r = swaks(backstop, "--to", "user@example.test", "--body", "hello from swaks")
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(backend.messages) == 1
    assert b"hello from swaks" in backend.messages[0]["data"]


def test_swaks_full_message_not_accepted_without_backend(backstop_factory, dead_port):
    b = backstop_factory(domains={"example.test": {"deliver": f"127.0.0.1:{dead_port}"}})
    r = swaks(b, "--to", "user@example.test", "--body", "hello")
    assert r.returncode != 0, r.stdout
    assert not [l for l in r.stdout.splitlines() if l.startswith("<-  250 2.0.0")], r.stdout
    assert [l for l in r.stdout.splitlines() if l.startswith("<** 4")], r.stdout
