"""SPF (RFC 7208) through real SMTP sessions and the Postfix policy service, with backstop's
dns_servers pointed at a private nsd on loopback: a fail refused at MAIL when every domain
refuses alike, else at RCPT per recipient domain; softfail tagged and delivered with
Received-SPF and Authentication-Results; a silent DNS server is 451 4.7.24 (temperror, never
fail); spf_skip and per-domain overrides honoured; incoming Authentication-Results claiming our
authserv-id removed; the policy service answering SPF once per Postfix transaction; and
`backstop spf` (output and exit codes)."""
import re
import signal

import pytest

from conftest import HOSTNAME, dead_port, run_cli  # noqa: F401 (dead_port is a fixture)
from nsd_fixture import Nsd
from test_policyd import PolicyConn, start_policy
from test_signals import poll

ZONE = [
    'pass TXT "v=spf1 ip4:127.0.0.0/8 ip4:192.0.2.0/24 -all"',
    'fail TXT "v=spf1 ip4:198.51.100.0/24 -all"',
    'soft TXT "v=spf1 ~all"',
    'broken TXT "v=spf1 bogus:mechanism"',
    'expfail TXT "v=spf1 -all exp=why.spf.test"',
    'why TXT "Mail from %{d} never comes from %{c}"',
    'inc TXT "v=spf1 include:fail.spf.test a:nohost.spf.test -all"',
    'badhelo TXT "v=spf1 -all"',
    'goodhelo TXT "v=spf1 a -all"',
    'goodhelo A 127.0.0.1',
]


@pytest.fixture
def ns(tmp_path):
    n = Nsd(tmp_path / "nsd", {"spf.test": ZONE})
    yield n
    n.stop()


def spf_gateway(ns, **over):
    g = {"spf": "on", "dns_servers": ns.addr, "log_level": "info"}
    g.update(over)
    return g


def two_domains(backend, **tagged):
    return {"example.test": {"deliver": backend.addr},
            "tagged.test": {"deliver": backend.addr, "spf_fail": "tag", **tagged}}


def headers_of(data):
    return data.split(b"\r\n\r\n", 1)[0].decode()


def send(c, sender, rcpts, body="Subject: t\r\n\r\nhello\r\n"):
    """MAIL, the RCPTs, and DATA if one was accepted; returns the replies (MAIL, [RCPT...], DATA)."""
    c.ehlo()
    m = c.cmd(f"MAIL FROM:<{sender}>")
    if m.code != 250:
        return m, [], None
    rs = [c.cmd(f"RCPT TO:<{r}>") for r in rcpts]
    if not any(r.code == 250 for r in rs):
        return m, rs, None
    assert c.cmd("DATA").code == 354
    return m, rs, c.cmd(body + ".")


def test_fail_refused_at_mail_when_every_domain_rejects(backstop_factory, backend, ns):
    b = backstop_factory(gateway=spf_gateway(ns))
    with b.connect() as c:
        m, _, _ = send(c, "someone@expfail.spf.test", ["user@example.test"])
        assert (m.code, m.enhanced) == (550, "5.7.23"), m
        assert "Mail from expfail.spf.test never comes from 127.0.0.1" in m.text, m
        m, rs, d = send(c, "someone@pass.spf.test", ["user@example.test"])
        assert m.code == 250 and rs[0].code == 250 and d.code == 250, (m, rs, d)
    line = b.wait_log(r"session=\S+ mail .*from=<someone@expfail\.spf\.test> code=550").string
    for part in ("spf=fail", "spf_identity=mailfrom", 'spf_checked="someone@expfail.spf.test"',
                 "spf_action=reject", "check=spf"):
        assert part in line, line
    assert len(backend.messages) == 1
    h = headers_of(backend.messages[0]["data"])
    assert re.search(r"^Received-SPF: pass \(" + re.escape(HOSTNAME), h, re.M), h
    assert f"Authentication-Results: {HOSTNAME};\r\n\tspf=pass (sender IP is 127.0.0.1) " \
           "smtp.mailfrom=someone@pass.spf.test" in h, h


def test_per_domain_override_decides_each_recipient(backstop_factory, backend, ns):
    b = backstop_factory(gateway=spf_gateway(ns), domains=two_domains(backend))
    with b.connect() as c:
        m, rs, d = send(c, "x@inc.spf.test", ["a@example.test", "b@tagged.test", "c@example.test"])
    assert m.code == 250, m  # the domains differ: MAIL goes on, RCPT decides
    assert [(r.code, r.enhanced) for r in rs] == [(550, "5.7.23"), (250, "2.1.5"), (550, "5.7.23")], rs
    assert "SPF fail: inc.spf.test does not designate 127.0.0.1 as a permitted sender" in rs[0].text, rs[0]
    assert d.code == 250
    msg = backend.messages[0]
    assert msg["rcpts"] == ["<b@tagged.test>"]
    h = headers_of(msg["data"])
    assert "Received-SPF: fail (" in h and "identity=mailfrom" in h and "envelope-from=x@inc.spf.test" in h, h
    assert "\tspf=fail (sender IP is 127.0.0.1) smtp.mailfrom=x@inc.spf.test" in h, h
    mail = b.wait_log(r"session=\S+ mail .*from=<x@inc\.spf\.test> code=250").string
    assert "spf=fail" in mail and "spf_action=per-domain" in mail, mail
    rej = b.wait_log(r"rcpt=<a@example\.test> code=550").string
    assert "spf=fail" in rej and "spf_action=reject" in rej and "check=spf" in rej, rej
    ok = b.wait_log(r"rcpt=<b@tagged\.test> code=250").string
    assert "spf=fail" in ok and "spf_action=tag" in ok, ok


def test_softfail_tagged_and_delivered_with_both_headers(backstop_factory, backend, ns):
    b = backstop_factory(gateway=spf_gateway(ns))
    with b.connect() as c:
        m, rs, d = send(c, "x@soft.spf.test", ["user@example.test"])
    assert (m.code, rs[0].code, d.code) == (250, 250, 250)
    h = headers_of(backend.messages[0]["data"])
    lines = h.split("\r\n")
    assert lines[0].startswith("Received: from client.test"), h
    assert any(l.startswith("Received-SPF: softfail (") for l in lines), h
    assert f"Authentication-Results: {HOSTNAME};\r\n\tspf=softfail" in h, h


def test_spf_results_counted_in_metrics(backstop_factory, backend, ns):
    """Each evaluation counts once under its result, whatever the action made of it."""
    from test_metrics import http_get, metrics_addr, parse, value
    b = backstop_factory(gateway=spf_gateway(ns, metrics_listen="127.0.0.1:0"))
    with b.connect() as c:
        for sender in ("x@soft.spf.test", "y@soft.spf.test", "z@pass.spf.test", "w@expfail.spf.test"):
            send(c, sender, ["user@example.test"])
            c.cmd("RSET")
    s = parse(http_get(metrics_addr(b))[2])
    got = {r: value(s, "backstop_check_outcomes_total", check="spf", outcome=r)
           for r in ("softfail", "pass", "fail", "none")}
    assert got == {"softfail": 2, "pass": 1, "fail": 1, "none": 0}, got
    assert value(s, "backstop_check_answers_total", check="spf", stage="mail", result="reject") == 1


def test_softfail_reject_and_permerror_reject(backstop_factory, backend, ns):
    b = backstop_factory(gateway=spf_gateway(ns, spf_softfail="reject", spf_permerror="reject"))
    with b.connect() as c:
        m, _, _ = send(c, "x@soft.spf.test", ["user@example.test"])
        assert (m.code, m.enhanced) == (550, "5.7.23"), m
        m, _, _ = send(c, "x@broken.spf.test", ["user@example.test"])
        assert (m.code, m.enhanced) == (550, "5.7.24"), m
        assert "SPF permanent error" in m.text, m


def test_dns_silent_is_temperror_451(backstop_factory, backend, ns):
    b = backstop_factory(gateway=spf_gateway(ns))
    ns.pause()
    try:
        with b.connect(timeout=30) as c:  # c-ares: 2 s, then 4 s
            m, _, _ = send(c, "x@fail.spf.test", ["user@example.test"])
    finally:
        ns.resume()
    assert (m.code, m.enhanced) == (451, "4.7.24"), m
    line = b.wait_log(r"session=\S+ mail .*code=451").string
    assert "spf=temperror" in line and "spf_action=defer" in line, line


def test_temperror_tag_delivers(backstop_factory, backend, ns):
    b = backstop_factory(gateway=spf_gateway(ns, spf_temperror="tag"))
    ns.pause()
    try:
        with b.connect(timeout=30) as c:  # c-ares: 2 s, then 4 s
            m, rs, d = send(c, "x@fail.spf.test", ["user@example.test"])
    finally:
        ns.resume()
    assert (m.code, rs[0].code, d.code) == (250, 250, 250)
    assert "Received-SPF: temperror" in headers_of(backend.messages[0]["data"])


def test_spf_skip_gateway_and_per_domain(backstop_factory, backend, ns):
    b = backstop_factory(gateway=spf_gateway(ns, spf_skip="10.0.0.0/8, 127.0.0.0/8"))
    with b.connect() as c:
        m, rs, d = send(c, "x@fail.spf.test", ["user@example.test"])
    assert (m.code, rs[0].code, d.code) == (250, 250, 250)
    assert "Received-SPF" not in headers_of(backend.messages[0]["data"])
    assert "spf=skipped" in b.wait_log(r"session=\S+ mail .*code=250").string
    b.stop()
    # only tagged.test trusts this client: MAIL goes on, example.test still refuses
    b = backstop_factory(gateway=spf_gateway(ns), domains=two_domains(backend, spf_fail="reject",
                                                                      spf_skip="127.0.0.1"),
                         name="b2.conf")
    with b.connect() as c:
        m, rs, _ = send(c, "x@fail.spf.test", ["a@example.test", "b@tagged.test"])
    assert m.code == 250 and [r.code for r in rs] == [550, 250], (m, rs)
    assert "spf_action=skip" in b.wait_log(r"rcpt=<b@tagged\.test> code=250").string


def test_spf_helo_fail_decides(backstop_factory, backend, ns):
    b = backstop_factory(gateway=spf_gateway(ns, spf_helo="on"))
    with b.connect() as c:
        assert c.cmd("EHLO badhelo.spf.test").code == 250
        m = c.cmd("MAIL FROM:<x@pass.spf.test>")
        assert (m.code, m.enhanced) == (550, "5.7.23"), m
        assert c.cmd("EHLO goodhelo.spf.test").code == 250
        m = c.cmd("MAIL FROM:<x@pass.spf.test>")
        assert m.code == 250, m
    assert "spf_identity=helo" in b.wait_log(r"session=\S+ mail .*code=550").string
    # the null sender is checked as postmaster@HELO (RFC 7208 2.4)
    with b.connect() as c:
        assert c.cmd("EHLO badhelo.spf.test").code == 250
        m = c.cmd("MAIL FROM:<>")
        assert (m.code, m.enhanced) == (550, "5.7.23"), m
    assert 'spf_checked="postmaster@badhelo.spf.test"' in b.wait_log(r"from=<> code=550").string


def test_incoming_authentication_results_claiming_us_removed(backstop_factory, backend, ns):
    b = backstop_factory(gateway=spf_gateway(ns))
    body = (f"Authentication-Results: {HOSTNAME.upper()}; spf=pass smtp.mailfrom=forged@bank.test\r\n"
            "Authentication-Results: other.example;\r\n\tdkim=pass header.d=x.test\r\n"
            f"Authentication-Results: {HOSTNAME};\r\n\tdkim=pass (folded, forged)\r\n"
            "Subject: t\r\n\r\n"
            f"Authentication-Results: {HOSTNAME}; the body is not touched\r\n")
    with b.connect() as c:
        m, rs, d = send(c, "x@pass.spf.test", ["user@example.test"], body=body)
    assert d.code == 250
    data = backend.messages[0]["data"].decode()
    h = headers_of(backend.messages[0]["data"])
    assert "forged" not in h, h
    assert "Authentication-Results: other.example;\r\n\tdkim=pass header.d=x.test\r\n" in h, h
    assert h.count(f"Authentication-Results: {HOSTNAME};") == 1, h  # ours
    assert f"\r\n\r\nAuthentication-Results: {HOSTNAME}; the body is not touched\r\n" in data, data
    b.wait_log(r"removed 2 Authentication-Results header fields claiming authserv-id")


def test_policy_service_answers_spf(backstop_factory, backend, ns):
    b, port = start_policy(backstop_factory, gateway=spf_gateway(ns), domains=two_domains(backend))
    c = PolicyConn(port)
    a = c.ask(sender="x@fail.spf.test", instance="i1")
    assert a.startswith("550 5.7.23 SPF fail: fail.spf.test does not designate 192.0.2.7"), a
    a = c.ask(sender="x@fail.spf.test", recipient="b@tagged.test", instance="i1")
    assert a.startswith("PREPEND Received-SPF: fail ("), a
    # the same transaction again: the result is known, the header was given
    assert c.ask(sender="x@fail.spf.test", recipient="c@tagged.test", instance="i1") == "DUNNO"
    assert c.ask(sender="x@fail.spf.test", recipient="alice@example.test", instance="i1").startswith("550 5.7.23")
    a = c.ask(sender="x@pass.spf.test", instance="i2")
    assert a.startswith("PREPEND Received-SPF: pass ("), a
    assert c.ask(sender="x@pass.spf.test", instance="i2") == "DUNNO"
    ns.pause()
    try:
        a = c.ask(sender="x@soft.spf.test", instance="i3")
    finally:
        ns.resume()
    assert a.startswith("DEFER_IF_PERMIT 4.7.24"), a
    c.close()
    line = b.wait_log(r"rcpt=<c@tagged\.test> .*frontend=policy").string
    assert "spf=fail" in line and "spf_action=tag" in line, line


# ---------------------------------------------------------------------------------------------
# backstop spf

def spf_cli(tmp_path, ns, *args, conf_extra=""):
    conf = tmp_path / "cli.conf"
    conf.write_text(f"[gateway]\nhostname = {HOSTNAME}\ndns_servers = {ns.addr}\n{conf_extra}"
                    "[domain example.test]\ndeliver = 127.0.0.1:25\n")
    return run_cli("spf", "-c", conf, *args, timeout=30)


def test_cli_results_and_output(tmp_path, ns):
    r = spf_cli(tmp_path, ns, "192.0.2.1", "user@pass.spf.test")
    assert r.returncode == 0, r
    out = r.stdout.splitlines()
    assert out[0] == "pass", r.stdout
    assert 'record: pass.spf.test "v=spf1 ip4:127.0.0.0/8 ip4:192.0.2.0/24 -all"' in out, r.stdout
    assert any(l.startswith("dns lookups: 0") for l in out), r.stdout
    r = spf_cli(tmp_path, ns, "192.0.2.1", "<user@inc.spf.test>")
    out = r.stdout.splitlines()
    assert r.returncode == 0 and out[0] == "fail", r.stdout
    assert any(l.startswith("dns lookups: 2") for l in out), r.stdout
    assert "explanation: inc.spf.test does not designate 192.0.2.1 as a permitted sender" in out, r.stdout
    r = spf_cli(tmp_path, ns, "2001:db8::1", "expfail.spf.test")
    assert r.stdout.splitlines()[0] == "fail" and \
        "explanation: Mail from expfail.spf.test never comes from 2001:db8::1" in r.stdout, r.stdout
    for sender, word in (("x@soft.spf.test", "softfail"), ("x@broken.spf.test", "permerror"),
                         ("x@nothing.spf.test", "none")):
        r = spf_cli(tmp_path, ns, "192.0.2.1", sender)
        assert r.returncode == 0 and r.stdout.splitlines()[0] == word, r.stdout
    r = spf_cli(tmp_path, ns, "192.0.2.1", "<>", "badhelo.spf.test")
    assert r.returncode == 0 and r.stdout.splitlines()[0] == "fail", r.stdout
    assert "identity: mailfrom postmaster@badhelo.spf.test" in r.stdout, r.stdout
    ns.pause()
    try:
        r = spf_cli(tmp_path, ns, "192.0.2.1", "x@fail.spf.test")
    finally:
        ns.resume()
    assert r.returncode == 0 and r.stdout.splitlines()[0] == "temperror", r.stdout


def test_cli_errors_exit_1(tmp_path, ns):
    for args in (("not-an-ip", "x@pass.spf.test"), ("192.0.2.1",), ("192.0.2.1", "<>"),
                 ("192.0.2.1", "a@b", "c", "d")):
        r = spf_cli(tmp_path, ns, *args)
        assert r.returncode == 1 and r.stdout == "", (args, r)
    bad = tmp_path / "bad.conf"
    bad.write_text("[gateway]\ndns_servers = ns.example.com\n")
    r = run_cli("spf", "-c", bad, "192.0.2.1", "x@pass.spf.test")
    assert r.returncode == 1 and "dns_servers" in r.stderr, r
    r = run_cli("spf", "--help")
    assert r.returncode == 0 and "backstop spf [-c FILE] IP SENDER [HELO]" in r.stdout, r


def test_pipelined_rcpts_wait_for_mail_and_answer_in_order(backstop_factory, backend, ns):
    b = backstop_factory(gateway=spf_gateway(ns), domains=two_domains(backend))
    with b.connect() as c:
        c.ehlo()
        c.send(b"MAIL FROM:<x@fail.spf.test>\r\nRCPT TO:<a@example.test>\r\nRCPT TO:<b@tagged.test>\r\n"
               b"RCPT TO:<c@elsewhere.test>\r\nRCPT TO:<d@tagged.test>\r\n")
        replies = [c.reply() for _ in range(5)]
        assert [(r.code, r.enhanced) for r in replies] == [
            (250, "2.1.0"), (550, "5.7.23"), (250, "2.1.5"), (554, "5.7.1"), (250, "2.1.5")], replies
        assert c.cmd("RSET").code == 250
        # a permerror is tagged everywhere: MAIL and RCPT go on
        c.send(b"MAIL FROM:<x@broken.spf.test>\r\nRCPT TO:<a@example.test>\r\n")
        assert [c.reply().code for _ in range(2)] == [250, 250]


def test_mail_refused_pipelined_rcpts_need_mail(backstop_factory, backend, ns):
    b = backstop_factory(gateway=spf_gateway(ns))
    with b.connect() as c:
        c.ehlo()
        c.send(b"MAIL FROM:<x@fail.spf.test>\r\nRCPT TO:<a@example.test>\r\nDATA\r\n")
        replies = [c.reply() for _ in range(3)]
    assert [r.code for r in replies] == [550, 503, 503], replies


def test_reload_applies_new_dns_servers(backstop_factory, backend, ns, dead_port):
    gw = spf_gateway(ns, dns_servers=f"127.0.0.1:{dead_port}")
    b = backstop_factory(gateway=gw)
    with b.connect(timeout=30) as c:
        m, _, _ = send(c, "x@fail.spf.test", ["user@example.test"])
    assert (m.code, m.enhanced) == (451, "4.7.24"), m
    b.conf.write_text(backstop_factory.render(gateway=spf_gateway(ns)))
    b.send_signal(signal.SIGHUP)
    b.wait_log(r"configuration reloaded")

    def mail_code():
        with b.connect(timeout=30) as c:
            c.ehlo()
            return c.cmd("MAIL FROM:<x@fail.spf.test>").code
    assert poll(lambda: mail_code() == 550), b.log_text()
