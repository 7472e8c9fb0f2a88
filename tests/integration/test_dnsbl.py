"""DNS blocklists at connect (dnsbl_sites) and `backstop blcheck`, against a real nsd serving test
lists on loopback (nsd_fixture.py), with backstop's dns_servers pointed at it. Clients bind to
127.0.1.x and 127.0.2.x source addresses (different /24s, no network namespaces needed).

Zones: bl.test (a blocklist: 127.0.1.2 -> 127.0.0.2 with a TXT reason, 127.0.1.3 -> 127.0.0.3),
spam.test (a second blocklist: 127.0.1.3), allow.test (an allowlist: 127.0.1.3 -> 127.0.5.2), and
refuse.test (a list refusing the resolver: 127.255.255.254 for 127.0.1.4)."""
import re
import socket
import subprocess

import pytest

from conftest import BACKSTOP_BIN, IO_TIMEOUT, SMTPConn, run_cli
from nsd_fixture import nsd, reverse_ip  # noqa: F401 (nsd is a fixture)

TXT_REASON = "Listed by bl.test, see https://bl.test/lookup?ip=127.0.1.2"


def zones():
    def rec(ip, rtype, value):
        return f"{reverse_ip(ip)} {rtype} {value}"
    return {
        "bl.test": [rec("127.0.1.2", "A", "127.0.0.2"), rec("127.0.1.2", "TXT", f'"{TXT_REASON}"'),
                    rec("127.0.1.3", "A", "127.0.0.3"), rec("127.0.1.5", "A", "127.0.0.2"),
                    rec("127.0.2.9", "A", "127.0.0.2"),
                    # an IPv6 listing in nibble format (blcheck)
                    rec("2001:db8::25", "A", "127.0.0.2")],
        "spam.test": [rec("127.0.1.3", "A", "127.0.0.2"), rec("127.0.1.3", "TXT", '"spam.test says no"')],
        "allow.test": [rec("127.0.1.3", "A", "127.0.5.2"), rec("127.0.1.5", "A", "127.0.5.2")],
        "refuse.test": [rec("127.0.1.4", "A", "127.255.255.254")],
    }


SITES = "bl.test=127.0.0.[2..11]*3, spam.test*2, allow.test=127.0.[0..255].[1..3]*-4, refuse.test*3"


class BoundConn(SMTPConn):
    """An SMTP client whose socket is bound to a given loopback source address."""

    def __init__(self, host, port, source, timeout=IO_TIMEOUT):
        self.sock = socket.create_connection((host, port), timeout=timeout, source_address=(source, 0))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.banner = self.reply()


def session(b, source, rcpt="user@example.test"):
    """Banner, EHLO, MAIL, one RCPT from source; returns the RCPT reply."""
    with BoundConn(b.host, b.port, source) as c:
        assert c.banner.code == 220, c.banner
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@remote.test>").code == 250
        r = c.cmd(f"RCPT TO:<{rcpt}>")
        c.cmd("QUIT")
        return r


@pytest.fixture(scope="module")
def has_dns_servers():
    """The dns_servers key comes with the SPF work (issue 11): without it backstop cannot be
    pointed at the test server."""
    probe = subprocess.run([BACKSTOP_BIN, "check-config", "-c", "/dev/stdin"],
                           input="[gateway]\ndns_servers = 127.0.0.1\n", capture_output=True, text=True,
                           timeout=30)
    if "unknown key 'dns_servers'" in probe.stdout + probe.stderr:
        pytest.skip("this backstop has no dns_servers key yet")


@pytest.fixture
def lists(nsd, has_dns_servers):
    return nsd(zones())


def start(backstop_factory, ns, **gw):
    conf = {"dns_servers": ns.addr, "dnsbl_sites": SITES, "dnsbl_timeout": "1500ms"}
    conf.update(gw)
    return backstop_factory(gateway=conf)


def connect_line(b, ip, mark=0):
    """The connect decision's log line of the client ip."""
    m = b.wait_log(rf"connect.*client=\[?{re.escape(ip)}\]?[ :].*dnsbl|"
                   rf"client=\[?{re.escape(ip)}\]?[ :].*connect.*dnsbl", start=mark)
    return m.string


def test_listed_client_refused_with_the_list_named(backstop_factory, lists):
    b = start(backstop_factory, lists)
    r = session(b, "127.0.1.2")
    assert r.code == 550 and r.enhanced == "5.7.1", r
    assert "bl.test" in r.text and "127.0.1.2" in r.text
    assert TXT_REASON in r.text  # the list's TXT record
    line = b.wait_log(r"rcpt.*user@example\.test.*550|550.*user@example\.test").string
    assert "sender@remote.test" in line  # the refusal is logged with sender and recipient
    assert "dnsbl_score=3" in b.log_text() and "bl.test:127.0.0.2:+3" in b.log_text()
    # a client listed nowhere on another network goes through, same daemon
    assert session(b, "127.0.2.1").code == 250


def test_screenings_counted_in_metrics(backstop_factory, lists):
    from test_metrics import http_get, metrics_addr, parse, value
    b = start(backstop_factory, lists, metrics_listen="127.0.0.1:0")
    codes = [session(b, ip).code for ip in ("127.0.1.2", "127.0.1.3", "127.0.2.1", "127.0.1.4")]
    assert codes == [550, 250, 250, 250], codes
    s = parse(http_get(metrics_addr(b))[2])
    got = {o: value(s, "backstop_check_outcomes_total", check="dnsbl", outcome=o)
           for o in ("listed", "under_threshold", "clean", "list_refused")}
    # 127.0.1.2 listed; 127.0.1.3 scores 1; 127.0.2.1 nowhere; 127.0.1.4 only on the refusing list
    assert got == {"listed": 1, "under_threshold": 1, "clean": 2, "list_refused": 1}, got


def test_two_lists_add_up_and_allowlist_outweighs(backstop_factory, lists):
    # 127.0.1.3: bl.test 127.0.0.3 (+3), spam.test (+2), allow.test (-4): 1, under 3
    b = start(backstop_factory, lists)
    assert session(b, "127.0.1.3").code == 250
    assert b.wait_log(r"dnsbl_score=1 ").string
    # without the allowlist the same client scores 5 and is refused naming both lists
    b2 = start(backstop_factory, lists, dnsbl_sites=SITES.replace("allow.test", "nolist.test"))
    r = session(b2, "127.0.1.3")
    assert r.code == 550 and "bl.test" in r.text and "spam.test" in r.text, r
    assert b2.wait_log(r"dnsbl_score=5 ").string


def test_list_timeout_fails_open(backstop_factory, lists):
    b = start(backstop_factory, lists)
    lists.pause()  # nsd stops answering: every list times out
    try:
        r = session(b, "127.0.1.2")
    finally:
        lists.resume()
    assert r.code == 250, r
    text = b.log_text()
    assert "dnsbl_score=0" in text and "bl.test:timeout" in text
    assert re.search(r"dnsbl: list bl\.test, client 127\.0\.1\.2: failed \(timeout", text)


def test_127_255_255_reply_is_an_error_not_a_listing(backstop_factory, lists):
    b = start(backstop_factory, lists)
    r = session(b, "127.0.1.4")  # refuse.test*3 would reach the threshold if it counted
    assert r.code == 250, r
    text = b.log_text()
    assert "dnsbl_score=0" in text and "refuse.test:refused" in text
    assert re.search(r"backstop\[error\]: dnsbl: list refuse\.test, client 127\.0\.1\.4: answered 127\.255\.255\.254, "
                     r"an ERROR reply", text)


def test_dnsbl_skip(backstop_factory, lists):
    b = start(backstop_factory, lists, dnsbl_skip="127.0.1.0/24, 2001:db8::/32")
    assert session(b, "127.0.1.2").code == 250
    assert "dnsbl_skip=yes" in b.log_text()
    assert session(b, "127.0.2.9").code == 550  # listed, and not in the skipped network


def test_dnsbl_action_log(backstop_factory, lists):
    b = start(backstop_factory, lists, dnsbl_action="log")
    assert session(b, "127.0.1.2").code == 250
    line = b.wait_log(r"dnsbl_would_reject=yes").string
    assert "dnsbl_score=3" in line and "bl.test" in line


def test_every_rcpt_of_a_listed_session_refused(backstop_factory, lists):
    b = start(backstop_factory, lists)
    with BoundConn(b.host, b.port, "127.0.1.2") as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@remote.test>").code == 250
        for rcpt in ("a@example.test", "b@example.test"):
            assert c.cmd(f"RCPT TO:<{rcpt}>").code == 550
        assert c.cmd("DATA").code in (503, 554)


def test_check_config_refuses_bad_lists(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("[gateway]\nlisten = 127.0.0.1:0\ncache = memory:\n"
                    "dnsbl_sites = zen.spamhaus.org=127.0.0.[2..11*3\n"
                    "dnsbl_skip = 10.0.0.0/33\n"
                    "[domain example.test]\ndeliver = 127.0.0.1:1\n")
    r = run_cli("check-config", "-c", conf)
    assert r.returncode == 1
    assert f"{conf}:4: dnsbl_sites: entry 1" in r.stdout
    assert f"{conf}:5: dnsbl_skip = 10.0.0.0/33: prefix length too long" in r.stdout


# ---------------------------------------------------------------------------------------------
# backstop blcheck

def blcheck_conf(tmp_path, ns, sites="bl.test, spam.test, allow.test*-1, refuse.test", addresses=None,
                 name="blcheck.conf"):
    conf = tmp_path / name
    lines = ["[gateway]", "listen = 127.0.0.1:0", "cache = memory:", f"dns_servers = {ns.addr}",
             f"blcheck_sites = {sites}", "dnsbl_timeout = 1500ms"]
    if addresses:
        lines.append(f"blcheck_addresses = {addresses}")
    lines += ["[domain example.test]", "deliver = 127.0.0.1:1"]
    conf.write_text("\n".join(lines) + "\n")
    return conf


def test_blcheck_exit_codes(tmp_path, lists):  # noqa: C901 (one server, many cases)
    conf = blcheck_conf(tmp_path, lists, addresses="127.0.2.1, 127.0.2.2")
    clean = run_cli("blcheck", "-c", conf)  # blcheck_addresses: listed nowhere
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "127.0.2.1: listed on 0 of 4 lists" in clean.stdout
    assert "127.0.2.2 bl.test" in clean.stdout

    listed = run_cli("blcheck", "-c", conf, "127.0.1.2", "2001:db8::25")
    assert listed.returncode == 1, listed.stdout + listed.stderr
    assert re.search(r"127\.0\.1\.2 bl\.test +LISTED 127\.0\.0\.2 \"" + re.escape(TXT_REASON) + '"',
                     listed.stdout), listed.stdout
    assert re.search(r"2001:db8::25 bl\.test +LISTED 127\.0\.0\.2", listed.stdout)
    assert "127.0.1.2 spam.test                    not listed" in listed.stdout

    # an allowlist listing is no reason for exit 1
    allowed = run_cli("blcheck", "-c", blcheck_conf(tmp_path, lists, sites="allow.test*-1", name="allow.conf"), "127.0.1.5")
    assert allowed.returncode == 0 and "LISTED (allowlist)" in allowed.stdout, allowed.stdout

    refused = run_cli("blcheck", "-c", conf, "127.0.1.4")  # 127.255.255.254: a failed lookup
    assert refused.returncode == 2, refused.stdout
    assert "refuse.test" in refused.stdout and "ERROR" in refused.stdout

    lists.pause()
    try:
        failed = run_cli("blcheck", "-c", conf, "127.0.2.1", timeout=20)
    finally:
        lists.resume()
    assert failed.returncode == 2, failed.stdout
    assert "ERROR: timeout" in failed.stdout

    # the same figures for Prometheus: one gauge per list, checked by promtool
    prom = tmp_path / "blcheck.prom"
    listed = run_cli("blcheck", "-c", conf, "--metrics-file", str(prom), "127.0.1.2", "127.0.1.3", "2001:db8::25")
    assert listed.returncode == 1, listed.stdout + listed.stderr
    text = prom.read_text()
    assert not (tmp_path / "blcheck.prom.tmp").exists()
    from test_metrics import promtool_check
    promtool_check(text)
    gauges = dict(re.findall(r'^backstop_blocklist_listed\{zone="([a-z.]+)"\} (\d+)$', text, re.M))
    assert gauges == {"bl.test": "3", "spam.test": "1", "allow.test": "0", "refuse.test": "0"}, text
    assert re.search(r"^backstop_blocklist_checked_addresses 3$", text, re.M), text
    assert run_cli("blcheck", "-c", conf, "-m", str(tmp_path / "nodir" / "x.prom"), "127.0.2.1").returncode == 2

    bad = run_cli("blcheck", "-c", conf, "not-an-ip")
    assert bad.returncode == 3 and "not an IP address" in bad.stderr
