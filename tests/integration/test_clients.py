"""Real clients: Python's smtplib and Postfix's smtp-source (a small parallel load)."""
import re
import smtplib
import subprocess

SMTP_SOURCE = "/usr/sbin/smtp-source"


def test_smtplib_session(backstop):
    with smtplib.SMTP(backstop.host, backstop.port, local_hostname="client.test", timeout=10) as s:
        code, msg = s.ehlo()
        assert code == 250
        assert s.has_extn("pipelining") and s.has_extn("smtputf8") and s.has_extn("size")
        assert s.mail("sender@client.test")[0] == 250
        assert s.rcpt("user@example.test")[0] == 250
        code, msg = s.rcpt("user@evil.test")
        assert code == 554, msg
        code, msg = s.data(b"Subject: hi\r\n\r\nhello\r\n")
        assert code == 250, (code, msg)                 # the backend's answer
        assert s.noop()[0] == 250


def test_smtplib_sendmail_refused(backstop):
    with smtplib.SMTP(backstop.host, backstop.port, local_hostname="client.test", timeout=10) as s:
        try:
            s.sendmail("sender@client.test", ["a@evil.test"], b"Subject: x\r\n\r\nx\r\n")
        except smtplib.SMTPRecipientsRefused as e:
            code, msg = e.recipients["a@evil.test"]
            assert code == 554 and b"5.7.1" in msg
        else:
            raise AssertionError("relay was accepted")


def test_smtp_source_load(backstop_factory, backend):
    b = backstop_factory(gateway={"max_connections_per_ip": 100})
    sessions, messages = 10, 200
    r = subprocess.run([SMTP_SOURCE, "-A", "-s", str(sessions), "-m", str(messages),
                        "-M", "client.test", "-f", "sender@client.test", "-t", "user@example.test",
                        f"{b.host}:{b.port}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    # one decision line per RCPT, all accepted
    b.wait_log(r"rcpt=<user@example\.test>.*code=250", count=messages, timeout=30)
    sessions_seen = {re.search(r"session=(\S+)", l).group(1)
                     for l in b.log if "rcpt=<user@example.test>" in l}
    assert len(sessions_seen) == messages
    assert len(backend.messages) == messages        # every message delivered in-line
    assert b.alive()
    with b.connect() as c:
        assert c.cmd("QUIT").code == 221
