#!/usr/bin/python3
"""bench/harvest_attack.py - a dictionary attack (directory harvest) against backstop and, in the
same run, against a Postfix gateway doing reject_unverified_recipient with anvil limits, both in
front of the same validation server. Not a test: prints figures.

The attack: 100,000 RCPTs to names drawn at random from a dictionary of 20,000 random names (a
tenth of them real users of the validation server), sent at full speed from 1,000 client
addresses 127.x.y.z (random, hence nearly all in different /24s), up to --parallel sessions at
once, RCPTs pipelined 10 at a time. A session that is closed (421) reconnects; an address whose
connection is refused at the banner gives up its remaining RCPTs. Meanwhile a legitimate sender
on another network (127.255.255.1) sends RCPTs to a real, already verified user, one every 5 ms,
50 per message, each message delivered, and its RCPT latency is measured in its own process,
without the attack first, then during it. backstop runs with its defaults, written out; among
them error_delay (each refused RCPT past a session's 10th error is answered 1 s later), which
slows the attacker: --error-delay 0 measures the attack unslowed.

Reported per gateway: probes that reached the validation server per second (peak in any second,
and mean over the attack; backstop: must stay at or under callout_max_rate), RCPTs answered per
second, what the attacker learned (250 and 5.1.1 answers, and distinct names of each), the
attacker's connections refused at the banner, and the legitimate sender's p50/p99 with and
without the attack (backstop: within 2 ms).

The attacker and the legitimate sender are Python (asyncio; blocking sockets) in processes of
their own, the attacker at nice 10: in the field it runs on other machines, and here its own CPU
(a Python client at full speed takes about one of the two cores) would otherwise be taken from
the gateway and the legitimate sender alike, which no real attack can do; the validation server a Python thread per connection in this process (it counts each
RCPT with its time). Needs root (the Postfix gateway lives under a temp dir; the system's
Postfix is not touched), postfix, smtp-sink and the backstop binary ($BACKSTOP_BIN, default
build/backstop). The machine has 2 cores that everything shares: --scale 0.1 runs a tenth of the
attack (10,000 RCPTs, 2,000 names, 100 addresses) in well under a minute.

Usage: sudo bench/harvest_attack.py [--scale 1.0] [--rate 100] [--parallel 100]
                                    [--gateways backstop,postfix] [--legit-seconds 4] [--max-seconds 300]
A gateway that has not answered the whole attack within --max-seconds is reported on what it
answered by then (Postfix's error sleeps and anvil limits slow the attacker to about 40 RCPTs a
second: the full 100,000 would take some 40 minutes there).
"""
import argparse
import asyncio
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

BACKSTOP_BIN = os.environ.get("BACKSTOP_BIN", str(ROOT / "build" / "backstop"))
LEGIT_SOURCE = "127.255.255.1"
LEGIT_USER = "legit.user@example.test"


# ---- the attacker (run as: harvest_attack.py --attacker PORT JOBS.json OUT.json) ----

async def reply(reader):
    lines = []
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        lines.append(line)
        if line[3:4] != b"-":
            return int(line[:3]), line[4:].decode(errors="replace").strip()


async def attack_address(port, source, rcpts, out, stats):
    """Send rcpts from source, pipelined 10 at a time; reconnect when closed; give up when refused
    at the banner or after 3 connections in a row that answered nothing."""
    i, fruitless = 0, 0
    while i < len(rcpts) and fruitless < 3:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        except OSError:
            stats["connect_errors"] += 1
            fruitless += 1
            continue
        stats["connections"] += 1
        answered_here = 0
        try:
            code, _ = await reply(reader)
            if code != 220:
                stats["refused_at_banner"] += 1
                stats["not_sent"] += len(rcpts) - i
                return
            writer.write(b"EHLO harvester.test\r\nMAIL FROM:<>\r\n")
            await reply(reader)
            code, _ = await reply(reader)
            if code != 250:
                fruitless += 1
                continue
            while i < len(rcpts):
                chunk = rcpts[i:i + 10]
                writer.write(b"".join(f"RCPT TO:<{r}>\r\n".encode() for r in chunk))
                for r in chunk:
                    code, text = await reply(reader)
                    if code == 421:  # the session ends: its remaining RCPTs go in the next one
                        raise ConnectionError("421")
                    m = re.match(r"(\d\.\d{1,3}\.\d{1,3})", text)
                    out.append((r, code, m.group(1) if m else ""))
                    i += 1
                    answered_here += 1
        except (ConnectionError, OSError, ValueError):
            pass
        finally:
            writer.close()
        fruitless = 0 if answered_here else fruitless + 1
    stats["not_sent"] += len(rcpts) - i


async def attack(port, jobs, parallel, max_seconds):
    sem = asyncio.Semaphore(parallel)
    out, stats = [], Counter()

    async def one(source, rcpts):
        async with sem:
            await attack_address(port, source, rcpts, out, stats)
    t0 = time.monotonic()
    tasks = [asyncio.ensure_future(one(s, r)) for s, r in jobs]
    _, pending = await asyncio.wait(tasks, timeout=max_seconds)
    for t in pending:  # the time limit: what was not answered by then is never sent
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    dt = time.monotonic() - t0
    if pending:
        stats["stopped_at_time_limit"] = 1
        stats["not_sent"] = sum(len(r) for _, r in jobs) - len(out)
    return out, dict(stats), dt


def attacker_main(port, jobs_file, out_file, parallel, max_seconds):
    os.nice(10)  # the attacker's client CPU stands in for other machines' (module docstring)
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    jobs = json.loads(Path(jobs_file).read_text())
    t0 = time.time()
    out, stats, dt = asyncio.run(attack(port, jobs, parallel, max_seconds))
    Path(out_file).write_text(json.dumps({"answers": out, "stats": stats, "seconds": dt, "t0": t0}))


# ---- the legitimate sender (run as: harvest_attack.py --legit PORT SECONDS OUT.json) ----

def legit_main(port, seconds, out_file):
    import signal
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))  # the attack is over: write and end
    lat = []
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(LEGIT_SOURCE, 0))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = s.makefile("rb")

    def cmd(line):
        s.sendall(line.encode() + b"\r\n")
        while True:
            r = f.readline()
            if not r or r[3:4] != b"-":
                return int(r[:3]) if r else 0

    def banner():
        while True:
            r = f.readline()
            if not r or r[3:4] != b"-":
                return int(r[:3]) if r else 0
    try:
        code = banner()
    except OSError as e:  # a gateway whose every process is busy with the attacker
        Path(out_file).write_text(json.dumps({"latency_ms": lat, "codes": {}, "error": f"no banner: {e}"}))
        return
    if code != 220:
        Path(out_file).write_text(json.dumps({"latency_ms": lat, "codes": {}, "error": f"banner {code}"}))
        return
    cmd("EHLO legit.client.test")
    codes = Counter()
    end = time.monotonic() + seconds
    while time.monotonic() < end and not stop:
        cmd("MAIL FROM:<someone@legit.client.test>")
        for _ in range(50):
            t0 = time.perf_counter()
            code = cmd(f"RCPT TO:<{LEGIT_USER}>")
            lat.append((time.perf_counter() - t0) * 1000)
            codes[code] += 1
            time.sleep(0.005)
        # deliver, as a legitimate sender does: 100 RSETs without mail would be junk commands
        if cmd("DATA") == 354:
            cmd("Subject: legit\r\n\r\nhello\r\n.")
        else:
            cmd("RSET")
    cmd("QUIT")
    Path(out_file).write_text(json.dumps({"latency_ms": lat, "codes": codes}))


# ---- the peers ----

def gateway_conf(validator, sink, rate, error_delay):
    return f"""[gateway]
listen = 127.0.0.1:0
hostname = mx.backstop.bench
workers = 2
log_level = notice
cache = memory:
max_connections = 5000
# the defaults, written out: what this benchmark measures
harvest_limit = 25/1h
harvest_network_limit = 100/1h
harvest_tarpit = 5s
harvest_penalty = 1h
callout_max_rate = {rate}
max_connections_per_ip = 50
max_errors = 20
error_delay_after = 10
error_delay = {error_delay}
[domain example.test]
deliver = {sink.addr}
verify = callout:{validator.addr}
"""


class Backstop:
    def __init__(self, conf, tmp):
        path = Path(tmp) / "backstop.conf"
        path.write_text(conf)
        self.logf = Path(tmp) / "backstop.log"
        self.err = open(self.logf, "w+")
        self.proc = subprocess.Popen([BACKSTOP_BIN, "run", "-c", str(path)], stderr=self.err,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            m = re.search(r"ready listen=127\.0\.0\.1:(\d+)", self.logf.read_text())
            if m:
                self.port = int(m.group(1))
                return
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit("backstop did not start:\n" + self.logf.read_text())
            time.sleep(0.05)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


def postfix_gateway(validator):
    """Postfix verifying recipients against the validator (reject_unverified_recipient: probes
    through its queue, verdicts in address_verify_map), with anvil limits per client address and
    an error tarpit (smtpd_error_sleep_time), as an admin would set them against harvesting."""
    from callout_fixtures import Postfix
    return Postfix(name="harvest-gw", procs=100, extra=f"""
relay_recipient_maps =
transport_maps = inline:{{ example.test=smtp:[127.0.0.1]:{validator.port} }}
smtpd_recipient_restrictions = reject_unverified_recipient
unverified_recipient_reject_code = 550
address_verify_map = btree:$data_directory/verify_cache
address_verify_negative_cache = yes
smtp_tls_security_level = none
smtp_helo_name = mx.postfix.bench
myhostname = mx.postfix.bench
anvil_rate_time_unit = 60s
smtpd_client_connection_count_limit = 10
smtpd_client_connection_rate_limit = 30
smtpd_client_recipient_rate_limit = 50
smtpd_soft_error_limit = 10
smtpd_hard_error_limit = 20
smtpd_error_sleep_time = 1s
# anvil's rate limits count every RCPT: the legitimate sender (200 RCPTs/s) is exempted, as an
# admin would list a known partner; backstop's budgets count only unknown recipients
smtpd_client_event_limit_exceptions = {LEGIT_SOURCE}
# no log: under the attack's rate postlogd's datagram queue fills and it blocks on its own log
# (seen on this machine, where nothing reads /dev/log), stalling every smtpd that logs
maillog_file =
""")


# ---- one run ----

def legit(port, seconds, tmp, name):
    out = Path(tmp) / f"legit-{name}.json"
    return subprocess.Popen([sys.executable, __file__, "--legit", str(port), str(seconds), str(out)]), out


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


def run_gateway(name, port, jobs, validator, args, tmp):
    # warm: the legitimate user is verified and cached before anything is measured
    for _ in range(50):
        p, out = legit(port, 0.01, tmp, name + "-warm")
        p.wait(60)
        if json.loads(out.read_text())["codes"].get("250"):
            break
        time.sleep(0.5)
    p, out = legit(port, args.legit_seconds, tmp, name + "-alone")
    p.wait(120)
    alone = json.loads(out.read_text())["latency_ms"]
    jobs_file, attack_out = Path(tmp) / "jobs.json", Path(tmp) / f"attack-{name}.json"
    jobs_file.write_text(json.dumps(jobs))
    mark = len(validator.times)
    t0 = time.monotonic()
    atk = subprocess.Popen([sys.executable, __file__, "--attacker", str(port), str(jobs_file), str(attack_out),
                            "--parallel", str(args.parallel), "--max-seconds", str(args.max_seconds)])
    time.sleep(0.2)  # the attack is under way when the legitimate sender starts
    lp, lout = legit(port, 1e9, tmp, name + "-attack")  # until the attack ends
    atk.wait(3600)
    attack_s = time.monotonic() - t0
    lp.terminate()
    lp.wait(60)
    legit_during = json.loads(lout.read_text()) if lout.exists() else {"latency_ms": [], "error": "no output"}
    during = legit_during["latency_ms"]
    res = json.loads(attack_out.read_text())
    time.sleep(2 if name == "backstop" else 5)  # probes still queued at Postfix go out
    probes = validator.times[mark:]
    r = summarise(name, res, probes, t0, attack_s, alone, during)
    r["legit_error"] = legit_during.get("error")
    return r


def summarise(name, res, probes, t0, attack_s, alone, during):
    answers = res["answers"]
    codes = Counter((c, e) for _, c, e in answers)
    valid_names = {r for r, c, _ in answers if c == 250}
    invalid_names = {r for r, c, e in answers if c == 550 and e.startswith("5.1.")}
    per_second = Counter(int(t - t0) for t in probes)
    in_attack = [t for t in probes if t - t0 <= attack_s]
    return {
        "name": name, "seconds": attack_s, "answered": len(answers), "codes": codes, "stats": res["stats"],
        "valid_answers": codes.get((250, "2.1.5"), 0) + codes.get((250, ""), 0) + codes.get((250, "2.0.0"), 0),
        "invalid_answers": sum(n for (c, e), n in codes.items() if c == 550 and e.startswith("5.1.")),
        "valid_names": len(valid_names), "invalid_names": len(invalid_names),
        "probes": len(probes), "probes_in_attack": len(in_attack),
        "peak_probes_per_s": max(per_second.values()) if per_second else 0,
        "alone": alone, "during": during,
    }


def report(r, rate, real_names):
    print(f"\n== {r['name']}: attack took {r['seconds']:.1f} s")
    print(f"   RCPTs answered: {r['answered']} = {r['answered'] / r['seconds']:.0f}/s; attacker connections "
          f"{r['stats'].get('connections', 0)}, refused at the banner {r['stats'].get('refused_at_banner', 0)}, "
          f"RCPTs never sent {r['stats'].get('not_sent', 0)}"
          + (" (the attack was stopped at --max-seconds)" if r["stats"].get("stopped_at_time_limit") else ""))
    top = ", ".join(f"{c} {e or '-'}: {n}" for (c, e), n in r["codes"].most_common(6))
    print(f"   replies: {top}")
    print(f"   probes at the validation server: {r['probes']} in all ({r['probes_in_attack']} during the attack), "
          f"{r['probes_in_attack'] / r['seconds']:.0f}/s mean, {r['peak_probes_per_s']} in the busiest second"
          + (f" (callout_max_rate = {rate})" if r["name"] == "backstop" else ""))
    print(f"   learned: {r['valid_answers']} 'exists' answers ({r['valid_names']} distinct names, of "
          f"{real_names} real ones in the dictionary), {r['invalid_answers']} 'unknown' answers "
          f"({r['invalid_names']} distinct names)")
    a, d = r["alone"], r["during"]
    if r.get("legit_error"):
        print(f"   legitimate sender during the attack: {r['legit_error']} ({len(d)} RCPTs answered before)")
    if a and d:
        print(f"   legitimate sender's RCPT latency: alone p50 {pct(a, 50):.2f} ms p99 {pct(a, 99):.2f} ms "
              f"({len(a)} RCPTs); during the attack p50 {pct(d, 50):.2f} ms p99 {pct(d, 99):.2f} ms ({len(d)} RCPTs): "
              f"+{pct(d, 50) - pct(a, 50):.2f} / +{pct(d, 99) - pct(a, 99):.2f} ms")


class Validator:
    """The fake validation server of the tests, with the time of each RCPT it gets."""

    def __init__(self, known):
        from callout_fixtures import FakeValidator
        self.fv = FakeValidator(known=known)
        self.times, self.port, self.addr = [], self.fv.port, self.fv.addr
        seen, lock = self.fv._rcpt, threading.Lock()

        def timed(addr):
            with lock:
                self.times.append(time.monotonic())
            seen(addr)
        self.fv._rcpt = timed

    def close(self):
        self.fv.close()


def main():
    sys.stdout.reconfigure(line_buffering=True)
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--rate", type=int, default=100, help="callout_max_rate for backstop")
    ap.add_argument("--parallel", type=int, default=100, help="attacker sessions at once")
    ap.add_argument("--gateways", default="backstop,postfix")
    ap.add_argument("--legit-seconds", type=float, default=4.0)
    ap.add_argument("--max-seconds", type=float, default=300,
                    help="stop the attack on a gateway after this long (Postfix's error sleeps make a full one last ~40 min)")
    ap.add_argument("--error-delay", default="1s",
                    help="backstop's error_delay (default: the default; 0 measures the attack unslowed)")
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--networks", type=int, default=0,
                    help="put the attacker's addresses in this many /24s (default: random 127.x.y.z)")
    args = ap.parse_args()
    if os.geteuid() != 0 and "postfix" in args.gateways:
        raise SystemExit("needs root (a private Postfix instance)")
    random.seed(args.seed)
    n_rcpts, n_names, n_addrs = (int(x * args.scale) for x in (100000, 20000, 1000))
    names = [f"w{random.getrandbits(40):010x}@example.test" for _ in range(n_names)]
    real = set(random.sample(names, n_names // 10))
    addrs = set()
    while len(addrs) < n_addrs:
        if args.networks:
            net = random.Random(len(addrs) % args.networks).randint(1, 254 * 256)  # the same /24s
            a = f"127.{net // 256}.{net % 256}.{random.randint(1, 254)}"
        else:
            a = f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
        addrs.add(a)
    addrs = sorted(addrs)
    per = n_rcpts // n_addrs
    jobs = [(a, [random.choice(names) for _ in range(per)]) for a in addrs]
    tmp = tempfile.mkdtemp(prefix="bs-harvest-")
    from peers import SmtpSink
    validator = Validator(real | {LEGIT_USER})
    sink, results = SmtpSink(), []
    print(f"harvest_attack: {n_rcpts} RCPTs over {n_names} names ({len(real)} real) from {n_addrs} addresses "
          f"in {len({a.rsplit('.', 1)[0] for a in addrs})} /24s, "
          f"{args.parallel} sessions at once; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    try:
        for gw in args.gateways.split(","):
            if gw == "backstop":
                b = Backstop(gateway_conf(validator, sink, args.rate, args.error_delay), tmp)
                try:
                    results.append(run_gateway("backstop", b.port, jobs, validator, args, tmp))
                finally:
                    b.stop()
                    trips = len(re.findall(r"harvest: client=", b.logf.read_text()))
                    print(f"   (backstop logged {trips} budgets reached)")
            elif gw == "postfix":
                pf = postfix_gateway(validator)
                try:
                    results.append(run_gateway("postfix", pf.port, jobs, validator, args, tmp))
                finally:
                    pf.stop()
            report(results[-1], args.rate, len(real))
    finally:
        sink.stop()
        validator.close()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--attacker":
        par = int(sys.argv[sys.argv.index("--parallel") + 1]) if "--parallel" in sys.argv else 100
        limit = float(sys.argv[sys.argv.index("--max-seconds") + 1]) if "--max-seconds" in sys.argv else 1e9
        attacker_main(int(sys.argv[2]), sys.argv[3], sys.argv[4], par, limit)
    elif len(sys.argv) > 1 and sys.argv[1] == "--legit":
        legit_main(int(sys.argv[2]), float(sys.argv[3]), sys.argv[4])
    else:
        main()
