"""metrics_listen: /metrics scraped while clients send mail (promtool accepts every scrape, the
counters move exactly as the traffic dictates, no label carries an address), the status page at /
rendered by headless Chromium (no console message, a screenshot kept as an artefact, the backend
shown as down once its sink is stopped), and contrib's alert rules checked by promtool.
"""
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from callout_fixtures import FakeValidator
from peers import SmtpSink

ROOT = Path(__file__).resolve().parents[2]
ARTEFACTS = ROOT / "build" / "artefacts"
PROMTOOL = shutil.which("promtool")
CHROMIUM = shutil.which("chromium")
CLIENT_IP = "127.0.0.3"  # the clients' source address: it must never show up in the metrics
METRICS_RE = re.compile(r"ready metrics_listen=([0-9.]+:\d+)")
SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

VALID = [f"user{i}@example.test" for i in range(5)]


# ---------------------------------------------------------------------------------------------
# helpers

def metrics_addr(b):
    return METRICS_RE.search(b.wait_log(r"ready metrics_listen=").string).group(1)


def http_get(addr, path="/metrics"):
    with urllib.request.urlopen(f"http://{addr}{path}", timeout=10) as r:
        return r.status, r.headers.get("Content-Type"), r.read().decode()


def parse(text):
    """{(name, frozenset(labels)): value} of every sample; labels as (key, value) pairs."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = frozenset(LABEL_RE.findall(m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def promtool_check(text):
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"promtool check metrics: {r.stdout}{r.stderr}"
    return r.stdout + r.stderr


class Client:
    """A minimal SMTP client whose connections come from CLIENT_IP."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=10, source_address=(CLIENT_IP, 0))
        self.f = self.sock.makefile("rb")
        assert self.reply().startswith("220")

    def reply(self):
        lines = []
        while True:
            line = self.f.readline().decode()
            assert line, "connection closed"
            lines.append(line)
            if line[3:4] != "-":
                return "".join(lines)

    def cmd(self, line):
        self.sock.sendall(line.encode() + b"\r\n")
        return int(self.reply()[:3])

    def close(self):
        self.f.close()
        self.sock.close()


def session(b, rcpts, data=True):
    """One session: EHLO, MAIL, the RCPTs, DATA if one was accepted, QUIT. Returns the RCPT codes."""
    c = Client(b.host, b.port)
    try:
        assert c.cmd("EHLO client.test") == 250
        assert c.cmd("MAIL FROM:<sender-secret@client.test>") == 250
        codes = [c.cmd(f"RCPT TO:<{r}>") for r in rcpts]
        if data and 250 in codes:
            assert c.cmd("DATA") == 354
            assert c.cmd("Subject: metrics test\r\n\r\nhello\r\n.") == 250
        assert c.cmd("QUIT") == 221
        return codes
    finally:
        c.close()


def start(backstop_factory, backend, tmp_path, **gw):
    rcpt_map = tmp_path / "relay_recipients"
    rcpt_map.write_text("".join(f"{a} OK\n" for a in VALID))
    b = backstop_factory(
        # no harvest budget: the counts below are those of relay control and verification alone
        gateway={"metrics_listen": "127.0.0.1:0", "log_level": "info", "backend_retry_after": "30s",
                 "harvest_limit": 0, "harvest_network_limit": 0, **gw},
        domains={"example.test": {"deliver": backend.addr, "verify": f"map:{rcpt_map}"}})
    return b, metrics_addr(b)


def wait_metric(addr, pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        samples = parse(http_get(addr)[2])
        if pred(samples):
            return samples
        shown = sorted((k, v) for k, v in samples.items() if k[0].startswith("backstop_sessions"))
        assert time.monotonic() < deadline, f"metrics did not reach the expected state: {shown}"
        time.sleep(0.05)  # polling the endpoint with a deadline: there is no event to wait on


# ---------------------------------------------------------------------------------------------
# /metrics

@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package prometheus) not installed")
def test_metrics_count_traffic_exactly(backstop_factory, backend, tmp_path):
    b, addr = start(backstop_factory, backend, tmp_path)
    status, ctype, text = http_get(addr)
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    promtool_check(text)

    # S sessions, each: 2 valid, 1 invalid (map), 1 relay refusal (not our domain)
    S, THREADS = 40, 4
    per = [VALID[i % 5] for i in range(2)] + ["nobody-secret@example.test", "victim-secret@elsewhere.test"]
    scrapes, errors, done = [], [], threading.Event()

    def scraper():
        while not done.is_set():
            try:
                scrapes.append(http_get(addr)[2])
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))
            time.sleep(0.01)  # one scrape every 10 ms during the load

    def load(n):
        try:
            for _ in range(n):
                codes = session(b, per)
                assert codes == [250, 250, 550, 554], codes
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    t_scrape = threading.Thread(target=scraper)
    t_scrape.start()
    loaders = [threading.Thread(target=load, args=(S // THREADS,)) for _ in range(THREADS)]
    for t in loaders:
        t.start()
    for t in loaders:
        t.join(120)
    done.set()
    t_scrape.join(10)
    assert not errors, errors[:3]
    assert len(scrapes) >= 5, "too few scrapes during the load"

    # every scrape is valid exposition, and counters never go back
    for text in scrapes[:: max(1, len(scrapes) // 5)]:
        promtool_check(text)
    prev = {}
    for text in scrapes:
        cur = parse(text)
        for k, v in cur.items():
            if k[0].endswith("_total") or k[0].endswith("_count") or k[0].endswith("_bucket"):
                assert v >= prev.get(k, 0), f"counter {k} went back: {prev.get(k)} -> {v}"
        prev = cur

    final = wait_metric(addr, lambda s: value(s, "backstop_sessions_open") == 0
                        and value(s, "backstop_sessions_total") == S)
    text = http_get(addr)[2]
    promtool_check(text)
    N, M, K = 2 * S, S, S  # valid, invalid, relay refusals
    v = lambda name, **l: value(final, name, **l)  # noqa: E731
    assert v("backstop_sessions_total") == S
    assert v("backstop_sessions_ended_total", reason="quit") == S
    assert sum(v("backstop_sessions_ended_total", reason=r) for r in
               ("lost", "timeout", "too_many_errors", "other", "protocol_error")) == 0
    assert v("backstop_smtp_commands_total", command="ehlo") == S
    assert v("backstop_smtp_commands_total", command="mail") == S
    assert v("backstop_smtp_commands_total", command="rcpt") == N + M + K
    assert v("backstop_smtp_commands_total", command="data") == S
    assert v("backstop_smtp_replies_total", stage="connect", **{"class": "2xx"}) == S
    assert v("backstop_smtp_replies_total", stage="rcpt", **{"class": "2xx"}) == N
    assert v("backstop_smtp_replies_total", stage="rcpt", **{"class": "5xx"}) == M + K
    assert v("backstop_smtp_replies_total", stage="rcpt", **{"class": "4xx"}) == 0
    assert v("backstop_smtp_replies_total", stage="data", **{"class": "3xx"}) == S
    assert v("backstop_smtp_replies_total", stage="end_of_data", **{"class": "2xx"}) == S
    assert v("backstop_backend_final_replies_total", **{"class": "2xx"}) == S
    # decisions: relay refuses K, verification refuses M and lets N through
    assert v("backstop_check_answers_total", check="relay", stage="rcpt", result="reject") == K
    assert v("backstop_check_answers_total", check="verify", stage="rcpt", result="reject") == M
    assert (v("backstop_check_answers_total", check="verify", stage="rcpt", result="neutral")
            + v("backstop_check_answers_total", check="verify", stage="rcpt", result="accept")) == N
    assert v("backstop_decisions_total", stage="rcpt", result="reject") == M + K
    assert v("backstop_decisions_total", stage="rcpt", result="defer") == 0
    assert (v("backstop_decisions_total", stage="rcpt", result="neutral")
            + v("backstop_decisions_total", stage="rcpt", result="accept")) == N
    assert v("backstop_check_duration_seconds_count", check="verify", stage="rcpt") == N + M
    src = {"source": f"map:{tmp_path / 'relay_recipients'}", "type": "map"}
    assert v("backstop_source_answers_total", verdict="valid", **src) == N
    assert v("backstop_source_answers_total", verdict="invalid", **src) == M
    assert v("backstop_source_up", **src) == 1
    assert v("backstop_verify_verdicts_total", source=src["source"], verdict="valid", cached="no") == N
    assert v("backstop_verify_verdicts_total", source=src["source"], verdict="invalid", cached="no") == M
    assert v("backstop_verify_verdicts_total", source=src["source"], verdict="valid", cached="yes") == 0
    assert v("backstop_map_entries", **src) == len(VALID)
    assert v("backstop_backend_up", target=backend.addr) == 1
    assert len(backend.messages) == S

    # no label carries an address: no client IP, no sender or recipient, anywhere in the text
    assert CLIENT_IP not in text
    for secret in ("secret", "client.test", "elsewhere.test", "user0"):
        assert secret not in text, f"{secret!r} leaked into the metrics"
    for (_, labels) in final:
        for _, lv in labels:
            assert "@" not in lv, f"label value {lv!r} holds an address"


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package prometheus) not installed")
def test_metrics_reload_and_404(backstop_factory, backend, tmp_path):
    import signal
    b, addr = start(backstop_factory, backend, tmp_path)
    s = parse(http_get(addr)[2])
    assert value(s, "backstop_config_generation") == 1
    assert value(s, "backstop_config_last_reload_success") == 1
    mark = b.mark()
    b.send_signal(signal.SIGHUP)
    b.wait_log(r"configuration reloaded", start=mark)
    s = wait_metric(addr, lambda s: value(s, "backstop_config_generation") == 2)
    assert value(s, "backstop_config_reloads_total", result="success") == 1
    assert value(s, "backstop_config_last_reload_timestamp_seconds") > 0
    conf = b.conf.read_text()
    b.conf.write_text(conf + "\nno_such_key = 1\n")
    mark = b.mark()
    b.send_signal(signal.SIGHUP)
    b.wait_log(r"reload refused: keeping", start=mark)
    s = wait_metric(addr, lambda s: value(s, "backstop_config_reloads_total", result="failure") == 1)
    assert value(s, "backstop_config_generation") == 2
    assert value(s, "backstop_config_last_reload_success") == 0
    b.conf.write_text(conf)
    with pytest.raises(urllib.error.HTTPError) as e:
        http_get(addr, "/nothing")
    assert e.value.code == 404


def test_metrics_cache_and_validation_server(backstop_factory, backend, tmp_path):
    """verify = callout: the first RCPT of an address asks the validation server (a cache miss),
    the second is answered by the cache (a hit); the figures say exactly that."""
    fv = FakeValidator(known=["alice@example.test"])
    try:
        b = backstop_factory(
            gateway={"metrics_listen": "127.0.0.1:0", "positive_ttl": "1h", "negative_ttl": "1h"},
            domains={"example.test": {"deliver": backend.addr, "verify": f"callout:{fv.addr}"}})
        addr = metrics_addr(b)
        for _ in range(2):
            assert session(b, ["alice@example.test", "bob@example.test"], data=False) == [250, 550]
        s = parse(http_get(addr)[2])
        src = {"source": f"callout:{fv.addr}", "type": "callout"}
        assert value(s, "backstop_verdict_cache_hits_total", store="memory") == 2
        assert value(s, "backstop_verdict_cache_misses_total", store="memory") == 2
        assert value(s, "backstop_verdict_cache_entries", store="memory") == 2
        assert value(s, "backstop_verdict_cache_up", store="memory") == 1
        assert value(s, "backstop_source_answers_total", verdict="valid", **src) == 1
        assert value(s, "backstop_source_answers_total", verdict="invalid", **src) == 1
        assert value(s, "backstop_callout_probes_total", **src) == 2
        assert value(s, "backstop_callout_connections_opened_total", **src) >= 1
        assert value(s, "backstop_source_up", **src) == 1
        for verdict in ("valid", "invalid"):
            for cached in ("no", "yes"):
                assert value(s, "backstop_verify_verdicts_total", source=src["source"], verdict=verdict,
                             cached=cached) == 1, (verdict, cached)
        assert fv.rcpts["alice@example.test"] == 1 and fv.rcpts["bob@example.test"] == 1
        if PROMTOOL:
            promtool_check(http_get(addr)[2])
    finally:
        fv.close()


def test_metrics_tls_and_end_reasons(backstop_factory, tls_files):
    """A STARTTLS that succeeds, one whose handshake is garbage, a session that times out, one
    that says too much before the banner... each counted once, under its own reason."""
    cert, key = tls_files
    b = backstop_factory(gateway={"metrics_listen": "127.0.0.1:0", "tls_cert": cert, "tls_key": key,
                                  "command_timeout": "1s"})
    addr = metrics_addr(b)
    with b.connect() as c:                       # TLS, then QUIT
        c.ehlo()
        assert c.cmd("STARTTLS").code == 220
        c.starttls()
        c.ehlo()
        assert c.cmd("QUIT").code == 221
    with b.connect() as c:                       # a handshake that is not TLS
        c.ehlo()
        assert c.cmd("STARTTLS").code == 220
        c.send(b"\x16\x03\x01\x00\x05garbage-not-tls\r\n")
        assert c.closed(10)
    with b.connect() as c:                       # silence: command_timeout
        c.ehlo()
        assert c.closed(10)
    with b.connect() as c:                       # a web client
        c.send(b"GET / HTTP/1.0\r\n\r\n")
        assert c.closed(10)
    s = wait_metric(addr, lambda s: value(s, "backstop_sessions_open") == 0
                    and value(s, "backstop_sessions_total") == 4)
    assert value(s, "backstop_tls_handshakes_total", result="success") == 1
    assert value(s, "backstop_tls_handshakes_total", result="failure") == 1
    ended = {r: value(s, "backstop_sessions_ended_total", reason=r) for r in
             ("quit", "tls_error", "timeout", "protocol_error", "lost", "other")}
    assert ended == {"quit": 1, "tls_error": 1, "timeout": 1, "protocol_error": 1, "lost": 0, "other": 0}
    assert value(s, "backstop_smtp_commands_total", command="starttls") == 2
    assert value(s, "backstop_smtp_commands_total", command="invalid") == 1
    assert value(s, "backstop_smtp_replies_total", stage="other", **{"class": "4xx"}) == 1  # the 421


def test_metrics_count_harvest_budget(backstop_factory, backend, tmp_path):
    """A check added later (the harvest budget) shows in the decisions by its name, with no change
    to the metrics: each 450 the client got is one defer of check="harvest"."""
    b, addr = start(backstop_factory, backend, tmp_path, harvest_limit="3/1h", harvest_tarpit="0s",
                    harvest_penalty="0s")
    codes = session(b, [f"nobody{i}@example.test" for i in range(6)] + [VALID[0]], data=False)
    assert codes[:3] == [550, 550, 550] and 450 in codes, codes
    s = parse(http_get(addr)[2])
    deferred = codes.count(450)
    assert value(s, "backstop_check_answers_total", check="harvest", stage="rcpt", result="defer") == deferred
    assert value(s, "backstop_decisions_total", stage="rcpt", result="defer") == deferred
    assert value(s, "backstop_decisions_total", stage="rcpt", result="reject") == codes.count(550)
    assert value(s, "backstop_smtp_replies_total", stage="rcpt", **{"class": "4xx"}) == deferred
    # the address budget tripped once (the network's limit, 100/1h by default, was not reached)
    assert value(s, "backstop_check_outcomes_total", check="harvest", outcome="address_tripped") == 1
    assert value(s, "backstop_check_outcomes_total", check="harvest", outcome="network_tripped") == 0


# ---------------------------------------------------------------------------------------------
# the status page in a real browser

def chromium(url, tmp_path, name, extra=()):
    """Render url headless; returns (screenshot path, console lines, DOM text)."""
    shot = tmp_path / f"{name}.png"
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'chromium-profile'}", "--enable-logging=stderr", "--v=0",
            "--window-size=412,1400", "--virtual-time-budget=3000", *extra]
    r = subprocess.run(args + [f"--screenshot={shot}", url], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    console = [l for l in r.stderr.splitlines() if ":CONSOLE" in l]
    dom = subprocess.run(args + ["--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    console += [l for l in dom.stderr.splitlines() if ":CONSOLE" in l]
    return shot, console, dom.stdout


def keep_artefact(path, name):
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, ARTEFACTS / name)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
def test_console_check_catches_errors(tmp_path):
    """The detector itself: a page that logs to the console is caught."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><title>x</title><link rel="icon" href="data:,">'
                    '<script>console.error("deliberate")</script>')
    _, console, _ = chromium(page.as_uri(), tmp_path, "bad")
    assert any("deliberate" in l for l in console)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
def test_status_page_in_chromium(backstop_factory, tmp_path):
    backend = SmtpSink()  # a real process: stopped, every connection to it goes
    try:
        status_page_checks(backstop_factory, backend, tmp_path)
    finally:
        backend.stop()


def status_page_checks(backstop_factory, backend, tmp_path):
    b, addr = start(backstop_factory, backend, tmp_path)
    for _ in range(3):
        session(b, [VALID[0], VALID[1], "nobody@example.test", "x@elsewhere.test"])
    status, ctype, html = http_get(addr, "/")
    assert status == 200 and ctype.startswith("text/html")
    # self-contained: nothing is fetched from anywhere
    assert not re.search(r'\ssrc=', html)
    assert set(re.findall(r'href="([^"]*)"', html)) <= {"data:,", "/metrics"}
    assert '<meta http-equiv="refresh"' in html and 'name="viewport"' in html

    shot, console, dom = chromium(f"http://{addr}/", tmp_path, "status")
    assert not console, f"console messages: {console}"
    assert shot.stat().st_size > 5000
    keep_artefact(shot, "status-page.png")
    assert "<svg" in dom and "Backends" in dom
    row = re.search(r'backend-state">(\w+)</td><td class="name">' + re.escape(backend.addr) + "<", dom)
    assert row and row.group(1) == "up"

    # the sink goes away: deliveries fail (a pooled connection may still serve one), the breaker
    # opens, the page says so
    backend.stop()
    deadline = time.monotonic() + 20
    while True:
        c = Client(b.host, b.port)
        try:
            c.cmd("EHLO client.test")
            c.cmd("MAIL FROM:<s@client.test>")
            c.cmd(f"RCPT TO:<{VALID[0]}>")
            c.cmd("QUIT")
        finally:
            c.close()
        s = parse(http_get(addr)[2])
        if value(s, "backstop_backend_up", target=backend.addr) == 0:
            break
        assert time.monotonic() < deadline, "the backend never showed as down"
    assert value(s, "backstop_backend_breaker_trips_total", target=backend.addr) == 1
    shot, console, dom = chromium(f"http://{addr}/", tmp_path, "status-down")
    assert not console, f"console messages: {console}"
    keep_artefact(shot, "status-page-backend-down.png")
    row = re.search(r'backend-state">(\w+)</td><td class="name">' + re.escape(backend.addr) + "<", dom)
    assert row and row.group(1) == "down"


# ---------------------------------------------------------------------------------------------
# contrib/

@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package prometheus) not installed")
def test_contrib_alert_rules():
    rules = ROOT / "contrib" / "prometheus" / "backstop-alerts.yml"
    r = subprocess.run([PROMTOOL, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    tests = ROOT / "contrib" / "prometheus" / "backstop-alerts.test.yml"
    r = subprocess.run([PROMTOOL, "test", "rules", str(tests)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_contrib_dashboard_uses_exported_metrics(backstop_factory, backend, tmp_path):
    """Every backstop_ metric the dashboard and the alerts query is one the daemon exports (or the
    blocklist gauge documented for blcheck's textfile)."""
    import json
    b, addr = start(backstop_factory, backend, tmp_path)
    session(b, [VALID[0]])
    exported = {n for n, _ in parse(http_get(addr)[2])}
    families = set(re.findall(r"^# TYPE (\S+)", http_get(addr)[2], re.M))
    known = exported | families | {f + s for f in families for s in ("_bucket", "_sum", "_count")}
    known |= {"backstop_blocklist_listed", "backstop_blocklist_last_check_timestamp_seconds"}
    dash = json.loads((ROOT / "contrib" / "grafana" / "backstop-dashboard.json").read_text())
    exprs = json.dumps(dash) + (ROOT / "contrib" / "prometheus" / "backstop-alerts.yml").read_text()
    used = set(re.findall(r"backstop_[a-z0-9_]+", exprs))
    used -= {"backstop_instance"}
    assert used, "no metric used"
    assert used <= known, f"unknown metrics: {sorted(used - known)}"


def test_man_page_lists_every_metric(backstop_factory, backend, tmp_path):
    """backstop(8)'s METRICS section names every family the daemon serves (with a verdict cache,
    a map source and traffic, so that every group is present)."""
    b, addr = start(backstop_factory, backend, tmp_path)
    session(b, [VALID[0], "nobody@example.test"])
    families = set(re.findall(r"^# TYPE (\S+)", http_get(addr)[2], re.M))
    man = (ROOT / "man" / "backstop.8").read_text()
    section = man[man.index(".Sh METRICS"):man.index(".Sh SIGNALS")]
    documented = set(re.findall(r"Sy (backstop_[a-z0-9_]+)", section))
    assert families - documented == set(), "served but not in backstop(8) METRICS"
