#!/usr/bin/python3
"""bench/spf_bench.py - SPF decisions: backstop's policy service (policy_listen, spf = on) beside
Debian's postfix-policyd-spf-python, with the same DNS server (a private nsd on loopback) and
behind the same Postfix, in the same run. Not a test: prints figures.

The sender's domain publishes a record shaped like a big provider's (an include of an include,
ranges; three TXT lookups per evaluation) that passes the client. Every request is a new Postfix
transaction (a new `instance`), so each one is a fresh SPF evaluation for both servers (neither
may reuse the previous recipient's answer). Load: bench/policy_flood (N connections, one
request at a time on each, as Postfix's smtpd asks its policy service).

  backstop policy          policy requests straight to backstop's policy_listen: SPF
                           evaluations per second with a warm DNS cache (backstop keeps one per
                           process, by the answers' TTL) and backstop's own CPU per evaluation;
  policyd-spf policy       the same requests straight to policyd-spf (Postfix's spawn(8) on an
                           inet port, one Python process per connection), asking nsd for every
                           evaluation (pyspf keeps no cache between requests);
  postfix -> backstop      RCPTs (each after RSET and MAIL) to one Postfix smtpd listener whose
                           smtpd_recipient_restrictions = check_policy_service inet:backstop;
  postfix -> policyd-spf   the same to a second listener of the same Postfix with
                           check_policy_service unix:private/policyd-spf (the Debian setup).

Then the latency SPF adds to an SMTP session at backstop: whole sessions (connect, EHLO, MAIL,
RCPT, QUIT) one after the other against two backstops, spf = on and spf = off, taken in turn.

policyd-spf is Debian's /usr/bin/policyd-spf started through a wrapper that points pyspf's DNS
library (pydns, python3-dns) at the nsd (its code is unchanged), with HELO checks off on both sides
(HELO_reject = No_Check; backstop's spf_helo is off by default) and no address skipped.

Needs root (a private Postfix under a temp dir; the system's Postfix is not touched), nsd, the
postfix and postfix-policyd-spf-python packages, the backstop binary ($BACKSTOP_BIN, default
build/backstop) and bench/policy_flood beside it ($POLICY_FLOOD).
Usage: sudo bench/spf_bench.py [--requests 50000] [--slow-requests 3000] [--connections 20] [--sessions 400]
"""
import argparse
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
import nsd_fixture  # noqa: E402
from callout_fixtures import Postfix  # noqa: E402
from nsd_fixture import Nsd  # noqa: E402
from peers import SmtpSink, free_port, proc_cpu_s, wait_listening  # noqa: E402

BACKSTOP_BIN = os.environ.get("BACKSTOP_BIN", str(ROOT / "build" / "backstop"))
POLICY_FLOOD = os.environ.get("POLICY_FLOOD", str(Path(BACKSTOP_BIN).parent / "bench" / "policy_flood"))
POLICYD_SPF = "/usr/bin/policyd-spf"
SENDER = "someone@pass.bench.test"
ZONE = [
    'pass TXT "v=spf1 include:_spf.bench.test ~all"',
    '_spf TXT "v=spf1 include:_nb1.bench.test include:_nb2.bench.test ~all"',
    '_nb1 TXT "v=spf1 ip4:203.0.113.0/24 ip4:192.0.2.0/25 ip6:2001:db8::/32 ~all"',
    '_nb2 TXT "v=spf1 ip4:198.51.100.0/24 ip4:127.0.0.0/8 ~all"',
]
RCPTS = ["-t", "user@example.test"]
# nsd's response rate limiting (on by default: 200 answers/s per client block, the rest dropped or
# truncated) would make the server, not the SPF checker, the bottleneck: off for the benchmark
if "rrl-ratelimit" not in nsd_fixture.CONF:
    nsd_fixture.CONF = nsd_fixture.CONF.replace("    round-robin: no\n", "    round-robin: no\n    rrl-ratelimit: 0\n")

WRAPPER = """\
# policyd-spf with pyspf's DNS library (pydns on Debian) pointed at the benchmark's nsd (code unchanged)
import sys
import DNS
import spf  # reads /etc/resolv.conf: replaced below
DNS.defaults["server"] = ["127.0.0.1"]
DNS.defaults["port"] = {port}
from spf_engine.policyd_spf import main
sys.argv[0] = "policyd-spf"
sys.exit(main())
"""

POLICYD_CONF = """\
debugLevel = 0
TestOnly = 1
HELO_reject = No_Check
Mail_From_reject = Fail
PermError_reject = False
TempError_Defer = False
skip_addresses = 192.0.2.255/32
"""


class Backstop:
    """backstop with its policy service, SPF on or off, the nsd as its DNS."""

    def __init__(self, tmp, name, ns, sink, spf):
        self.conf = Path(tmp) / f"{name}.conf"
        self.conf.write_text(f"""[gateway]
listen = 127.0.0.1:0
policy_listen = 127.0.0.1:0
hostname = mx.backstop.bench
workers = 2
log_level = notice
max_connections = 5000
max_connections_per_ip = 5000
dns_servers = {ns.addr}
spf = {"on" if spf else "off"}
[domain example.test]
deliver = {sink.addr}
""")
        self.err = open(Path(tmp) / f"{name}.log", "w+")
        self.proc = subprocess.Popen([BACKSTOP_BIN, "run", "-c", str(self.conf)], stderr=self.err,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:  # the ready line names the ports the system picked
            text = Path(self.err.name).read_text()
            m = re.search(r"ready listen=127\.0\.0\.1:(\d+)", text)
            mp = re.search(r"ready policy_listen=127\.0\.0\.1:(\d+)", text)
            if m and mp:
                break
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit(f"backstop ({name}) did not start:\n{text}")
            time.sleep(0.05)  # polling the log with a deadline: there is no event to wait on
        self.smtp_port, self.policy_port = int(m.group(1)), int(mp.group(1))
        self.policy_addr = f"127.0.0.1:{self.policy_port}"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


class SpfPostfix(Postfix):
    """One Postfix: its main smtpd asks backstop, a second smtpd asks policyd-spf
    (unix:private/policyd-spf, spawned as Debian documents), and policyd-spf also answers on an
    inet port through spawn(8) for the direct measurement."""

    def __init__(self, tmp, bs, ns, procs=100):
        wrapper = Path(tmp) / "policyd-spf-bench.py"
        wrapper.write_text(WRAPPER.format(port=ns.port))
        conf = Path(tmp) / "policyd-spf.conf"
        conf.write_text(POLICYD_CONF)
        for p in (wrapper, conf):
            os.chmod(p, 0o644)
        os.chmod(tmp, 0o755)
        super().__init__(name="spf", procs=procs, extra=f"""
relay_recipient_maps =
myhostname = mx.postfix.bench
smtpd_recipient_restrictions = check_policy_service inet:{bs.policy_addr}, reject_unauth_destination
smtpd_policy_service_timeout = 30s
smtpd_policy_service_max_idle = 600s
smtpd_policy_service_max_ttl = 3600s
policyd-spf_time_limit = 3600s
""")
        self.spf_port, self.direct_port = free_port(), free_port()
        argv = f"argv=/usr/bin/python3 {wrapper} {conf}"
        with open(self.conf / "master.cf", "a") as f:
            f.write(f"127.0.0.1:{self.spf_port} inet n - n - {procs} smtpd"
                    " -o smtpd_recipient_restrictions=check_policy_service,unix:private/policyd-spf,"
                    "reject_unauth_destination\n"
                    f"policyd-spf unix - n n - 0 spawn user=nobody {argv}\n"
                    f"127.0.0.1:{self.direct_port} inet n n n - {procs} spawn user=nobody {argv}\n")
        r = subprocess.run(["postfix", "-c", str(self.conf), "reload"], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise SystemExit(f"postfix reload: {r.stdout}{r.stderr}")
        wait_listening(self.spf_port, timeout=15.0)
        wait_listening(self.direct_port, timeout=15.0)

    def stop(self):
        subprocess.run(["postfix", "-c", str(self.conf), "stop"], capture_output=True, timeout=60)


def machine_busy_s():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def children_cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def flood(addr, conns, n, smtp, bs_pid=None):
    """policy_flood's key=value figures, plus gateway_cpu_s (the machine's busy time minus the
    client's) and backstop_cpu_s (backstop's own threads, when bs_pid)."""
    cmd = [POLICY_FLOOD, "-c", str(conns), "-n", str(n), "-f", SENDER, *RCPTS] + (["-S", "-k", "1"] if smtp else []) + [addr]
    busy0, child0 = machine_busy_s(), children_cpu_s()
    own0 = proc_cpu_s(bs_pid) if bs_pid else 0.0
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    client = children_cpu_s() - child0
    fields = dict(kv.split("=", 1) for kv in out.stdout.split() if "=" in kv)
    if out.returncode != 0 or not fields:
        print(f"    policy_flood {' '.join(cmd[1:])}: exit {out.returncode}: {out.stdout.strip()} {out.stderr.strip()}")
    fields["gateway_cpu_s"] = machine_busy_s() - busy0 - client
    fields["backstop_cpu_s"] = proc_cpu_s(bs_pid) - own0 if bs_pid else None
    return fields


def row(name, conns, f):
    n = int(f.get("answered", 0))
    cpu = f["gateway_cpu_s"]
    print(f"{name:<24} {conns:>5} {float(f.get('per_s', 0)):>10,.0f} {int(f.get('p50_us', 0)) / 1000:>8.2f}"
          f" {int(f.get('p99_us', 0)) / 1000:>8.2f} {int(f.get('accept', 0)) + int(f.get('dunno', 0)):>7}"
          f" {int(f.get('reject', 0)) + int(f.get('defer', 0)) + int(f.get('other', 0)) + int(f.get('failed', 0)):>6}"
          f" {cpu / max(n, 1) * 1e6:>9.0f}"
          + (f" {f['backstop_cpu_s'] / max(n, 1) * 1e6:>8.1f}" if f["backstop_cpu_s"] is not None else f" {'-':>8}"))
    return float(f.get("per_s", 0))


def session(port):
    """One whole SMTP session; its duration in seconds."""
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = s.makefile("rb")

        def reply():
            while True:
                line = f.readline()
                if not line or line[3:4] != b"-":
                    return line

        reply()
        for cmd in (b"EHLO client.bench", f"MAIL FROM:<{SENDER}>".encode(), b"RCPT TO:<user@example.test>", b"QUIT"):
            s.sendall(cmd + b"\r\n")
            line = reply()
            if cmd.startswith(b"RCPT") and not line.startswith(b"250"):
                raise SystemExit(f"RCPT refused: {line!r}")
    return time.perf_counter() - t0


def session_latency(on, off, n):
    for _ in range(20):  # warm: connections, the DNS cache
        session(on.smtp_port), session(off.smtp_port)
    t_on, t_off = [], []
    for _ in range(n):
        t_on.append(session(on.smtp_port))
        t_off.append(session(off.smtp_port))
    q = lambda v, p: sorted(v)[int(p * (len(v) - 1))] * 1000  # noqa: E731
    print(f"\nsession latency at backstop (connect, EHLO, MAIL, RCPT, QUIT; {n} sessions each, in turn):")
    print(f"  spf = on : p50 {q(t_on, .5):.3f} ms  p90 {q(t_on, .9):.3f} ms  mean {statistics.mean(t_on) * 1000:.3f} ms")
    print(f"  spf = off: p50 {q(t_off, .5):.3f} ms  p90 {q(t_off, .9):.3f} ms  mean {statistics.mean(t_off) * 1000:.3f} ms")
    print(f"  added by SPF (warm cache): p50 {q(t_on, .5) - q(t_off, .5):+.3f} ms, mean"
          f" {(statistics.mean(t_on) - statistics.mean(t_off)) * 1000:+.3f} ms")


def main():
    sys.stdout.reconfigure(line_buffering=True)
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=50000, help="requests per backstop measurement")
    ap.add_argument("--slow-requests", type=int, default=3000, help="requests per policyd-spf measurement")
    ap.add_argument("--smtp-requests", type=int, default=10000, help="RCPTs through Postfix to backstop")
    ap.add_argument("--connections", type=int, default=20)
    ap.add_argument("--sessions", type=int, default=400)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (a private Postfix instance)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("spf_bench: terminated"))
    tmp = tempfile.mkdtemp(prefix="bs-spf-bench-")
    ns = sink = bs = bs_off = pf = None
    try:
        ns = Nsd(Path(tmp) / "nsd", {"bench.test": ZONE}, ttl=3600)
        sink = SmtpSink(backlog=1024)
        bs = Backstop(tmp, "spf-on", ns, sink, spf=True)
        bs_off = Backstop(tmp, "spf-off", ns, sink, spf=False)
        pf = SpfPostfix(tmp, bs, ns)
        version = subprocess.run(["postconf", "-d", "-h", "mail_version"], capture_output=True, text=True).stdout.strip()
        pkg = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "postfix-policyd-spf-python"],
                             capture_output=True, text=True).stdout.strip()
        print(f"spf_bench: backstop {BACKSTOP_BIN}; Postfix {version}; postfix-policyd-spf-python {pkg};"
              f" nsd on {ns.addr}; {os.cpu_count()} cores; sender {SENDER} (pass after 3 TXT lookups)")
        c = args.connections
        direct = f"127.0.0.1:{pf.direct_port}"
        spf_smtp = f"127.0.0.1:{pf.spf_port}"
        # warm-up: backstop's DNS cache, Postfix's smtpd and spawn processes
        for addr, smtp in ((bs.policy_addr, False), (direct, False), (pf.addr, True), (spf_smtp, True)):
            flood(addr, c, 4 * c, smtp)
        print(f"\n{'target':<24} {'conns':>5} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'pass':>7} {'other':>6}"
              f" {'CPU us/r':>9} {'bs us/r':>8}")
        rates = {}
        rates["bp"] = row("backstop policy", c, flood(bs.policy_addr, c, args.requests, False, bs.proc.pid))
        rates["sp"] = row("policyd-spf policy", c, flood(direct, c, args.slow_requests, False))
        rates["pb"] = row("postfix -> backstop", c, flood(pf.addr, c, args.smtp_requests, True, bs.proc.pid))
        rates["ps"] = row("postfix -> policyd-spf", c, flood(spf_smtp, c, args.slow_requests, True))
        print("\nreq/s: answers over the wall-clock time (connections already open); p50/p99: request to"
              " answer; pass: DUNNO/PREPEND/OK/2xx;\nother: refusals, deferrals, failures; CPU us/r: the"
              " machine's CPU minus the load generator's per request (every process: Postfix's,\n"
              "policyd-spf's, backstop's, nsd's); bs us/r: backstop's own CPU per request (its threads, from /proc)")
        if rates["sp"] > 0:
            print(f"\nbackstop's policy service answers SPF at {rates['bp'] / rates['sp']:.0f}x the rate of"
                  f" policyd-spf (direct); behind the same Postfix: {rates['pb'] / max(rates['ps'], 1e-9):.1f}x")
        session_latency(bs, bs_off, args.sessions)
    finally:
        for peer in (pf, bs, bs_off, sink, ns):
            if peer is not None:
                peer.stop()
        if pf is not None and os.environ.get("SPF_BENCH_LOG"):
            print(pf.log()[-int(os.environ["SPF_BENCH_LOG"]):])
        shutil.rmtree(tmp, ignore_errors=True)
        if pf is not None:
            shutil.rmtree(pf.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
