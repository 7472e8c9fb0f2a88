"""Pregreeting: a client that talks before the banner (greet_delay) is noted in the log."""
import re

PREGREET = r"\bpregreet\b"   # the word, not the test's tmp path (test_pregreet_...)


def test_pregreet_logged(backstop_factory):
    b = backstop_factory(gateway={"greet_delay": "1s"})
    with b.connect(read_banner=False, timeout=10) as c:
        c.send("EHLO eager.client.test\r\n")
        banner = c.reply()
        assert banner.code == 220, banner                  # pregreet = log (default): banner follows
        assert c.reply().code == 250                       # and the early EHLO is answered
        line = b.wait_log(PREGREET, timeout=10).string
        assert "127.0.0.1" in line, line


def test_patient_client_not_flagged(backstop_factory):
    b = backstop_factory(gateway={"greet_delay": "1s"})
    with b.connect(timeout=10) as c:
        assert c.banner.code == 220
        c.ehlo()
        assert c.cmd("QUIT").code == 221
    assert not [l for l in b.log if re.search(PREGREET, l)], b.log_text()


def test_pregreet_reject(backstop_factory):
    b = backstop_factory(gateway={"greet_delay": "1s", "pregreet": "reject"})
    with b.connect(read_banner=False, timeout=10) as c:
        c.send("EHLO eager.client.test\r\n")
        r = c.reply()
        assert (r.code, r.enhanced) == (554, "5.5.1"), r
        assert c.closed(), "the session must end after the refusal"
    b.wait_log(PREGREET)
