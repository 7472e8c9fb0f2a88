"""STARTTLS: offered only with a certificate, resets the session, and discards anything the
client pipelined after it in clear text (the 2011 STARTTLS command injection)."""
import smtplib
import ssl
import subprocess

import pytest

from conftest import HOSTNAME


@pytest.fixture
def tls_backstop(backstop_factory, tls_files):
    cert, key = tls_files
    return backstop_factory(gateway={"tls_cert": cert, "tls_key": key})


def ehlo_keywords(r):
    return {l.split(" ", 1)[0].upper() for l in r.lines[1:]}


def test_starttls_offered_and_session_reset(tls_backstop):
    with tls_backstop.connect() as c:
        assert "STARTTLS" in ehlo_keywords(c.ehlo())
        assert c.cmd("MAIL FROM:<a@client.test>").code == 250   # a transaction in clear text
        r = c.cmd("STARTTLS")
        assert (r.code, r.enhanced) == (220, "2.0.0"), r
        tls = c.starttls()
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        r = c.cmd("MAIL FROM:<a@client.test>")                   # EHLO needed again
        assert (r.code, r.enhanced) == (503, "5.5.1"), r
        r = c.ehlo()
        assert "STARTTLS" not in ehlo_keywords(r), r
        r = c.cmd("STARTTLS")
        assert (r.code, r.enhanced) == (503, "5.5.1"), r          # not twice
        assert c.cmd("MAIL FROM:<a@client.test>").code == 250
        assert c.cmd("RCPT TO:<user@example.test>").code == 250
        assert c.cmd("QUIT").code == 221


def test_starttls_command_injection(tls_backstop):
    with tls_backstop.connect() as c:
        c.ehlo()
        c.send("STARTTLS\r\nRSET\r\n")
        r = c.reply()
        assert (r.code, r.enhanced) == (220, "2.0.0"), r
        c.starttls()                      # asserts nothing else came in clear text
        r = c.cmd("EHLO client.test")     # the first reply over TLS must be the EHLO's
        assert r.code == 250 and r.lines[0].startswith(HOSTNAME), r
        assert len(r.lines) > 1, r
        r = c.cmd("NOOP")
        assert (r.code, r.enhanced) == (250, "2.0.0"), r


def test_starttls_with_argument_refused(tls_backstop):
    with tls_backstop.connect() as c:
        c.ehlo()
        r = c.cmd("STARTTLS now")
        assert (r.code, r.enhanced) == (501, "5.5.4"), r


def test_starttls_without_certificate(backstop):
    with backstop.connect() as c:
        c.ehlo()
        r = c.cmd("STARTTLS")
        assert (r.code, r.enhanced) == (502, "5.5.1"), r
        assert c.cmd("NOOP").code == 250


def test_failed_handshake_does_not_hurt(tls_backstop):
    with tls_backstop.connect() as c:
        c.ehlo()
        assert c.cmd("STARTTLS").code == 220
        c.send(b"\x16\x03\x01\x00\x05garbage-not-tls\r\n")
        assert c.closed(10)
    with tls_backstop.connect() as c:
        assert c.ehlo().code == 250


def test_smtplib_starttls(tls_backstop):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP(tls_backstop.host, tls_backstop.port, local_hostname="client.test",
                      timeout=10) as s:
        s.ehlo()
        assert s.has_extn("starttls")
        code, _ = s.starttls(context=ctx)
        assert code == 220
        s.ehlo()
        assert not s.has_extn("starttls")
        assert s.mail("sender@client.test")[0] == 250
        assert s.rcpt("user@example.test")[0] == 250
        code, msg = s.rcpt("user@evil.test")
        assert code == 554 and b"Relay access denied" in msg


def test_swaks_tls(tls_backstop):
    r = subprocess.run(["swaks", "--server", f"{tls_backstop.host}:{tls_backstop.port}", "--tls",
                        "--helo", "client.test", "--from", "sender@client.test",
                        "--to", "user@example.test", "--quit-after", "RCPT", "--timeout", "10"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "TLS started" in r.stdout, r.stdout


def test_bad_certificate_path_is_a_config_error(tmp_path, backstop_factory):
    from conftest import run_cli
    conf = tmp_path / "tls.conf"
    conf.write_text(backstop_factory.render(gateway={"tls_cert": tmp_path / "nope.pem",
                                                     "tls_key": tmp_path / "nope.key"}))
    r = run_cli("check-config", "-c", conf)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "nope.pem" in r.stdout + r.stderr
