#!/usr/bin/python3
"""bench/policy_bench.py - backstop's Postfix policy service (policy_listen) with cached verdicts:
decisions per second and latency (p50/p99) with 20 and 200 connections, beside Postfix deciding
the same RCPTs on its own with reject_unverified_recipient (verify(8) and its address
verification cache, warm) and Postfix smtpd delegating them to backstop (check_policy_service).
Not a test: prints figures.

Every target verifies against the same validation server (the in-process fake of the integration
tests: 2,000 known users, 550 for the others, counting every RCPT it is asked) and every target is
warmed first on the 400 addresses of the measurement (user0..199@, known; nobody0..199@,
unknown; taken in turn), so that no measured decision needs a probe: the script checks that the
validation server saw no RCPT while the measurements ran. The load generator is bench/policy_flood
(C, libevent): N connections held open, one request at a time on each (as Postfix smtpd asks its
policy service), the clock started once every connection is set up (SMTP: after MAIL).

  backstop policy      policy requests (protocol_state=RCPT, Postfix's full attribute set)
                       straight to backstop's policy_listen;
  postfix verify       RCPT commands to a Postfix smtpd with reject_unverified_recipient
                       (address_verify_map, warm): each RCPT asks verify(8) over a local socket;
  postfix -> policy    RCPT commands to a Postfix smtpd with check_policy_service inet:backstop:
                       the whole path a site that puts backstop behind Postfix gets;
  smtp-sink            RCPT commands to smtp-sink (accepts all, decides nothing): the most this
                       machine's loopback TCP and the client allow over SMTP.

Beside the wall-clock rate: the gateway's CPU per decision, all the CPU the machine spent
(/proc/stat) minus the load generator's (rusage), the same method as verify_flood.py; on a 2-core
machine the client and the gateway share the cores, so that is the rate one core would sustain.

Needs root (private Postfix instances under a temp dir; the system's Postfix is not touched), the
postfix package, the backstop binary ($BACKSTOP_BIN, default build/backstop) and
bench/policy_flood built beside it ($POLICY_FLOOD, default bench/policy_flood beside the binary).
Usage: sudo bench/policy_bench.py [--requests 100000] [--smtp-requests 20000] [--connections 20,200]
"""
import argparse
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from callout_fixtures import FakeValidator, Postfix  # noqa: E402
from peers import SmtpSink, gateway_key_line, proc_cpu_s  # noqa: E402

BACKSTOP_BIN = os.environ.get("BACKSTOP_BIN", str(ROOT / "build" / "backstop"))
POLICY_FLOOD = os.environ.get("POLICY_FLOOD", str(Path(BACKSTOP_BIN).parent / "bench" / "policy_flood"))
KNOWN = [f"user{i}@example.test" for i in range(2000)]
# user0..199@ (known: accepted) and nobody0..199@ (unknown: refused), taken in turn
RCPTS = ["-t", "user@example.test", "-t", "nobody@example.test", "-u", "200"]
DISTINCT = 400


class Backstop:
    """backstop verifying example.test by callout against the validator, its policy service on
    a free port."""

    def __init__(self, validator, sink, tmp):
        self.conf = Path(tmp) / "backstop.conf"
        self.conf.write_text(f"""[gateway]
listen = 127.0.0.1:0
policy_listen = 127.0.0.1:0
hostname = mx.backstop.bench
workers = 2
log_level = notice
cache = memory:
max_connections = 5000
max_connections_per_ip = 5000
verify_timeout = 20s
{gateway_key_line(BACKSTOP_BIN, "deliver_max_connections", 100000)}
# one client sends every unknown address: no harvest budget, no probe rate (bench/harvest_attack.py)
{gateway_key_line(BACKSTOP_BIN, "harvest_limit", 0)}{gateway_key_line(BACKSTOP_BIN, "harvest_network_limit", 0)}{gateway_key_line(BACKSTOP_BIN, "callout_max_rate", 0)}
[domain example.test]
deliver = {sink.addr}
verify = callout:{validator.addr}
# a run can outlast the default 5m: unknown addresses stay cached for all of it
negative_ttl = 1h
""")
        self.err = open(Path(tmp) / "backstop.log", "w+")
        self.proc = subprocess.Popen([BACKSTOP_BIN, "run", "-c", str(self.conf)], stderr=self.err,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:  # the ready line names the ports the system picked
            m = re.search(r"ready .*policy_listen=127\.0\.0\.1:(\d+)", Path(self.err.name).read_text())
            if m:
                break
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit("backstop did not start:\n" + Path(self.err.name).read_text())
            time.sleep(0.05)  # polling the log with a deadline: there is no event to wait on
        self.policy_addr = f"127.0.0.1:{m.group(1)}"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


COMMON_POSTFIX = """
relay_recipient_maps =
smtpd_recipient_limit = 1000
smtp_tls_security_level = none
myhostname = mx.postfix.bench
smtp_helo_name = mx.postfix.bench
"""


def postfix_verify(validator):
    """A Postfix gateway deciding by itself: reject_unverified_recipient, verdicts kept in
    address_verify_map (positive and negative), probes through its queue to the validator."""
    return Postfix(name="verify", procs=250, extra=COMMON_POSTFIX + f"""
transport_maps = inline:{{ example.test=smtp:[{validator.host}]:{validator.port} }}
smtpd_recipient_restrictions = reject_unverified_recipient
unverified_recipient_reject_code = 550
address_verify_map = btree:$data_directory/verify_cache
address_verify_negative_cache = yes
""")


def postfix_policy(bs):
    """A Postfix gateway delegating every RCPT to backstop's policy service."""
    return Postfix(name="policy", procs=250, extra=COMMON_POSTFIX + f"""
smtpd_recipient_restrictions = check_policy_service inet:{bs.policy_addr}
smtpd_policy_service_timeout = 30s
smtpd_policy_service_max_idle = 600s
smtpd_policy_service_max_ttl = 3600s
""")


def machine_busy_s():
    """CPU seconds the whole machine has spent busy (every core), from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def children_cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def flood(addr, conns, n, smtp, bs_pid=None):
    """Run policy_flood; its key=value figures as a dict, plus gateway_cpu_s (the machine's busy
    time meanwhile minus the client's) and backstop_cpu_s (backstop's own threads, when bs_pid)."""
    cmd = [POLICY_FLOOD, "-c", str(conns), "-n", str(n), *RCPTS] + (["-S"] if smtp else []) + [addr]
    busy0, child0 = machine_busy_s(), children_cpu_s()
    own0 = proc_cpu_s(bs_pid) if bs_pid else 0.0
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    client = children_cpu_s() - child0
    fields_own = proc_cpu_s(bs_pid) - own0 if bs_pid else None
    fields = dict(kv.split("=", 1) for kv in out.stdout.split() if "=" in kv)
    if out.returncode != 0 or not fields:
        print(f"    policy_flood {' '.join(cmd[1:])}: exit {out.returncode}: {out.stdout.strip()} {out.stderr.strip()}")
    # machine CPU counts the whole run (connection set-up included); the clock starts after it
    fields["gateway_cpu_s"] = machine_busy_s() - busy0 - client
    fields["backstop_cpu_s"] = fields_own
    return fields


def warm(name, addr, smtp):
    """Ask every address of the measurement until a pass has no temporary answer (Postfix says
    450 while verify(8) probes; backstop waits for the callout)."""
    for attempt in range(60):
        f = flood(addr, 20, DISTINCT, smtp)
        if f.get("failed") == "0" and f.get("defer") == "0" and f.get("answered") == str(DISTINCT):
            print(f"warm-up {name}: {DISTINCT} addresses have verdicts after {attempt + 1} pass(es)"
                  f" (accept {f['accept']}, dunno {f['dunno']}, reject {f['reject']})")
            return
        time.sleep(1)  # Postfix's probe runs through its queue: let it finish
    print(f"warm-up {name}: some addresses still answered with a temporary error after 60 passes: {f}")


def row(name, conns, f):
    n = int(f.get("answered", 0))
    cpu = f["gateway_cpu_s"]
    per_cpu = f"{n / cpu:9,.0f}" if cpu > 0.05 else "        -"
    print(f"{name:<22} {conns:>5} {float(f.get('per_s', 0)):>12,.0f} {int(f.get('p50_us', 0)) / 1000:>8.2f}"
          f" {int(f.get('p99_us', 0)) / 1000:>8.2f} {int(f.get('max_us', 0)) / 1000:>8.1f}"
          f" {int(f.get('accept', 0)) + int(f.get('dunno', 0)):>7} {f.get('reject', 0):>7}"
          f" {int(f.get('defer', 0)) + int(f.get('other', 0)) + int(f.get('failed', 0)):>6}"
          f" {cpu / max(n, 1) * 1e6:>8.0f} {per_cpu}"
          + (f" {f['backstop_cpu_s'] / max(n, 1) * 1e6:>8.0f}" if f["backstop_cpu_s"] is not None else f" {'-':>8}"))


def main():
    sys.stdout.reconfigure(line_buffering=True)
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=100000, help="policy requests per measurement")
    ap.add_argument("--smtp-requests", type=int, default=20000, help="RCPTs per measurement over SMTP")
    ap.add_argument("--connections", default="20,200")
    ap.add_argument("--targets", default="backstop,postfix-verify,postfix-policy,smtp-sink")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (private Postfix instances)")
    # a timeout's SIGTERM still stops the Postfix instances and backstop (the finally below)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("policy_bench: terminated"))
    conns = [int(c) for c in args.connections.split(",")]
    targets = args.targets.split(",")
    tmp = tempfile.mkdtemp(prefix="bs-policy-bench-")
    validator = FakeValidator(known=KNOWN)
    sink = SmtpSink(backlog=1024)
    bs = pf_verify = pf_policy = None
    try:
        runs = []
        if "backstop" in targets or "postfix-policy" in targets:
            bs = Backstop(validator, sink, tmp)
        if "backstop" in targets:
            runs.append(("backstop policy", bs.policy_addr, False, args.requests))
        if "postfix-verify" in targets:
            pf_verify = postfix_verify(validator)
            runs.append(("postfix verify", pf_verify.addr, True, args.smtp_requests))
        if "postfix-policy" in targets:
            pf_policy = postfix_policy(bs)
            runs.append(("postfix -> policy", pf_policy.addr, True, args.smtp_requests))
        if "smtp-sink" in targets:
            runs.append(("smtp-sink", sink.addr, True, args.smtp_requests))
        version = subprocess.run(["postconf", "-d", "-h", "mail_version"], capture_output=True, text=True).stdout.strip()
        print(f"policy_bench: backstop {BACKSTOP_BIN if bs else '(not started)'}; Postfix {version}; {os.cpu_count()} cores;"
              f" {DISTINCT} addresses (half known, half unknown), cached verdicts")
        for name, addr, smtp, _ in runs:
            if name != "smtp-sink":
                warm(name, addr, smtp)
        print(f"\n{'target':<22} {'conns':>5} {'decisions/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
              f" {'accept':>7} {'reject':>7} {'other':>6} {'CPU us/d':>8} {'d/CPU-s':>9} {'bs us/d':>8}")
        probes0 = validator.total_rcpts()
        for c in conns:
            for name, addr, smtp, n in runs:
                flood(addr, c, min(n, 20 * c), smtp)  # set up the connections (Postfix: the smtpd processes)
                pid = bs.proc.pid if bs and name in ("backstop policy", "postfix -> policy") else None
                row(name, c, flood(addr, c, n, smtp, pid))
        probes = validator.total_rcpts() - probes0
        print(f"\nRCPTs the validation server saw during the measurements: {probes}"
              f"{' (every verdict came from a cache)' if probes == 0 else ''}")
        print("decisions/s: answers over the wall-clock time (connections already open); p50/p99/max:"
              " request sent to answer read;\naccept: OK/DUNNO/2xx; reject: REJECT/5xx; other: defer/4xx,"
              " unknown answers and failed connections; CPU us/d: the\nmachine's CPU minus the client's"
              " per decision (all of Postfix's processes and backstop); d/CPU-s: decisions per CPU-second;"
              "\nbs us/d: backstop's own CPU per decision (its threads, from /proc)")
    finally:
        for peer in (pf_policy, pf_verify, bs, sink):
            if peer is not None:
                peer.stop()
        validator.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
