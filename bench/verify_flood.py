#!/usr/bin/python3
"""bench/verify_flood.py - recipient verification, backstop (verify = callout:) side by side with
a Postfix gateway using reject_unverified_recipient + address_verify_map, both asking the same
validation server (a private Postfix with relay_recipient_maps). Not a test: prints figures.

  (a) rejections per second: 20 parallel sessions, each RCPT to an unknown but already verified
      (cached) address, for a fixed number of sessions; driven by a Python client, by Postfix's
      smtp-source (one RCPT per session and 50, a harvest run) and by bench/smtp_flood (one RCPT
      per session, lockstep and pipelined; 50 pipelined), the last also against null-smtp
      (smtp-sink refusing every RCPT: the machine's own ceiling). Client and gateway share the
      cores, so beside the wall-clock rate the gateway's own CPU per rejection is printed: all
      CPU the machine spent (/proc/stat) minus the client's (rusage), the same method for every
      gateway. That is the rate one core of gateway would sustain;
  (b) first contact: 1,000 fresh addresses (half known users, half unknown), 20 in parallel: what
      the client sees at the first RCPT, and the time until it has a verdict (250/550), retrying
      a 4xx once a second the way a sending MTA would (faster than real MTAs do);
  (c) a dictionary flood against backstop: 100,000 RCPTs (50 per session, 20 sessions in
      parallel) to random addresses drawn from 20,000 names: how many probes reach the validation
      server, and the most connections it saw open at once (callout_max_connections = 2).

Needs root (Postfix instances under a temp dir; the system's Postfix is not touched), the
postfix package, smtp-sink, the backstop binary ($BACKSTOP_BIN, default build/backstop) and
bench/smtp_flood built beside it ($SMTP_FLOOD, default build/bench/smtp_flood).
Usage: sudo bench/verify_flood.py [--sessions 5000] [--fresh 1000] [--flood 100000] [--phases abc]
"""
import argparse
import asyncio
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from callout_fixtures import Postfix, SmtpSink  # noqa: E402
from peers import gateway_key_line, proc_cpu_s  # noqa: E402

BACKSTOP_BIN = os.environ.get("BACKSTOP_BIN", str(ROOT / "build" / "backstop"))
SMTP_FLOOD = os.environ.get("SMTP_FLOOD", str(Path(BACKSTOP_BIN).parent / "bench" / "smtp_flood"))
KNOWN = [f"user{i}@example.test" for i in range(2000)]
BACKSTOP_PID = None  # backstop's own CPU is read from /proc around each run


# ---- a small asyncio SMTP client that counts replies ----

async def reply(reader):
    code, lines = None, []
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        code = int(line[:3])
        lines.append(line[4:].decode(errors="replace").strip())
        if line[3:4] != b"-":
            return code, " ".join(lines)


async def session(host, port, rcpts):
    """One session: EHLO, MAIL, each RCPT (its reply code and latency), QUIT. A connection that
    fails gives code 0 for the RCPTs it did not answer."""
    try:
        return await session_raw(host, port, rcpts)
    except (ConnectionError, OSError, ValueError) as e:
        return [(r, 0, repr(e), 0.0) for r in rcpts]


async def session_raw(host, port, rcpts):
    reader, writer = await asyncio.open_connection(host, port)
    try:
        await reply(reader)
        writer.write(b"EHLO bench.client.test\r\n")
        await reply(reader)
        writer.write(b"MAIL FROM:<bench@client.test>\r\n")
        await reply(reader)
        out = []
        for r in rcpts:
            t0 = time.monotonic()
            writer.write(f"RCPT TO:<{r}>\r\n".encode())
            code, text = await reply(reader)
            out.append((r, code, text, time.monotonic() - t0))
        writer.write(b"QUIT\r\n")
        await writer.drain()
        return out
    finally:
        writer.close()


async def pool(jobs, parallel, fn):
    """Run fn(job) for every job with at most `parallel` at once; results in job order."""
    sem = asyncio.Semaphore(parallel)
    results = [None] * len(jobs)

    async def one(i, job):
        async with sem:
            results[i] = await fn(job)
    await asyncio.gather(*(one(i, j) for i, j in enumerate(jobs)))
    return results


# ---- the peers ----

class Backstop:
    def __init__(self, validator, sink, tmp):
        self.conf = Path(tmp) / "backstop.conf"
        self.conf.write_text(f"""[gateway]
listen = 127.0.0.1:0
hostname = mx.backstop.bench
workers = 2
log_level = notice
cache = memory:
max_connections = 2000
max_connections_per_ip = 2000
max_recipients = 100
max_errors = 100000
verify_timeout = 20s
# smtp-sink takes any number of connections: measure the verifying, not the cap of 16
{gateway_key_line(BACKSTOP_BIN, "deliver_max_connections", 100000)}
# one client sends every unknown address: no harvest budget, no probe rate (bench/harvest_attack.py)
{gateway_key_line(BACKSTOP_BIN, "harvest_limit", 0)}{gateway_key_line(BACKSTOP_BIN, "harvest_network_limit", 0)}{gateway_key_line(BACKSTOP_BIN, "callout_max_rate", 0)}
[domain example.test]
deliver = {sink.addr}
verify = callout:{validator.addr}
# a run can outlast the default 5m: unknown addresses stay cached for all of it, in every build
negative_ttl = 1h
""")
        self.err = open(Path(tmp) / "backstop.log", "w+")
        self.proc = subprocess.Popen([BACKSTOP_BIN, "run", "-c", str(self.conf)], stderr=self.err,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            m = re.search(r"ready listen=127\.0\.0\.1:(\d+)", Path(self.err.name).read_text())
            if m:
                self.port = int(m.group(1))
                break
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit("backstop did not start:\n" + Path(self.err.name).read_text())
            time.sleep(0.05)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


def postfix_gateway(validator):
    """A Postfix gateway verifying recipients against the validator (address probes through its
    queue, verdicts kept in address_verify_map)."""
    return Postfix(name="gateway", procs=100, extra=f"""
relay_recipient_maps =
transport_maps = inline:{{ example.test=smtp:[127.0.0.1]:{validator.port} }}
smtpd_recipient_restrictions = reject_unverified_recipient
unverified_recipient_reject_code = 550
address_verify_map = btree:$data_directory/verify_cache
address_verify_negative_cache = yes
smtp_tls_security_level = none
smtp_helo_name = mx.postfix.bench
myhostname = mx.postfix.bench
""")


# ---- the phases ----

def warm(host, port, addrs):
    """Verify addrs until each gives a final verdict (retrying 4xx)."""
    pending = list(addrs)
    deadline = time.monotonic() + 120
    while pending and time.monotonic() < deadline:
        res = asyncio.run(pool(pending, 20, lambda a: session(host, port, [a])))
        pending = [r[0][0] for r in res if r[0][1] // 100 == 4]
        if pending:
            time.sleep(1)
    return not pending


def phase_a(port, unknown, n):
    jobs = [[random.choice(unknown)] for _ in range(n)]
    t0 = time.monotonic()
    res = asyncio.run(pool(jobs, 20, lambda rc: session("127.0.0.1", port, rc)))
    dt = time.monotonic() - t0
    rejected = sum(1 for r in res if r[0][1] == 550)
    return rejected, dt


def machine_busy_s():
    """CPU seconds the whole machine has spent busy (every core), from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def children_cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def backstop_cpu_s():
    return proc_cpu_s(BACKSTOP_PID) if BACKSTOP_PID else 0.0


def run_client(cmd):
    """Run a load generator; its output, the seconds it took, the CPU seconds the rest of the
    machine (the gateway) spent meanwhile: all busy time (/proc/stat) minus the client's rusage,
    and the CPU seconds backstop's own threads ran meanwhile (/proc schedstat: unlike the
    machine's figure, it holds whatever else the machine runs)."""
    busy0, child0, own0 = machine_busy_s(), children_cpu_s(), backstop_cpu_s()
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    dt = time.monotonic() - t0
    client = children_cpu_s() - child0
    return out, dt, machine_busy_s() - busy0 - client, backstop_cpu_s() - own0


def phase_a_smtp_source(port, rcpt, n, per_session=1):
    """The same load driven by Postfix's smtp-source (C, so the client is not the limit): every
    session is connect, HELO, MAIL, per_session RCPTs (refused; smtp-source numbers them 1rcpt,
    2rcpt, ... when there are several), RSET, QUIT. Returns rejections, seconds, and the CPU
    seconds of the gateway (the machine's minus smtp-source's)."""
    cmd = ["/usr/sbin/smtp-source", "-A", "-s", "20", "-m", str(n), "-r", str(per_session), "-M", "client.test",
           "-f", "sender@client.test", "-t", rcpt, f"127.0.0.1:{port}"]
    out, dt, gateway, own = run_client(cmd)
    rejected = (out.stdout + out.stderr).count("recipient rejected: 550")
    return rejected, dt, gateway, own


def phase_a_flood(port, n, per_session, pipelined):
    """The same load driven by bench/smtp_flood (a few microseconds of client per session, so that
    the gateway sets the rate): n sessions of EHLO, MAIL, per_session RCPTs to nobody0..199@ (the
    warmed unknown addresses), QUIT; with pipelined, MAIL, the RCPTs and QUIT leave in one write.
    Returns rejections, seconds, and the gateway's CPU seconds, as phase_a_smtp_source does."""
    cmd = [SMTP_FLOOD, "-c", "20", "-n", str(n), "-r", str(per_session), "-t", "nobody@example.test",
           "-u", "200"] + (["-P"] if pipelined else []) + [f"127.0.0.1:{port}"]
    out, dt, gateway, own = run_client(cmd)
    fields = dict(kv.split("=", 1) for kv in out.stdout.split())
    if out.returncode != 0:
        print(f"    smtp_flood: {out.stdout.strip()} {out.stderr.strip()}")
    return int(fields.get("rcpt_5xx", 0)), dt, gateway, own


def warm_numbered(port, rcpt, per_session):
    """Have the gateway verify smtp-source's numbered recipients until every one is refused 550
    (Postfix answers 450 while its first probe runs)."""
    for _ in range(60):
        if phase_a_smtp_source(port, rcpt, 1, per_session)[0] == per_session:
            return True
        time.sleep(1)
    return False


def print_a(results, what):
    for name, (rej, dt, cpu, own) in results.items():
        print(f"    {name:9s} {rej:6d} rejected in {dt:6.2f} s = {rej / dt:7.0f} rejections/s; gateway CPU"
              f" {cpu:5.2f} s = {cpu / max(rej, 1) * 1e6:4.0f} us per rejection ="
              f" {rej / max(cpu, 1e-9):7.0f} rejections per CPU-second ({what})")
        if name == "backstop":
            print(f"    {'':9s} backstop's own CPU (/proc) {own:5.2f} s = {own / max(rej, 1) * 1e6:4.0f} us"
                  " per rejection")
    pr, pdt, pcpu, _ = results["postfix"]
    for name in ("backstop", "null-smtp"):
        if name in results:
            r, dt, cpu, _ = results[name]
            print(f"    {name} / postfix: {(r / dt) / (pr / pdt):.1f}x the rejections/s,"
                  f" {(r / cpu) / (pr / pcpu):.1f}x the rejections per CPU-second")


async def until_verdict(port, addr):
    """First reply, and seconds until a 250/550 (retrying a 4xx once a second)."""
    t0 = time.monotonic()
    first = None
    while True:
        (_, code, text, _), = await session("127.0.0.1", port, [addr])
        if first is None:
            first = (code, text, time.monotonic() - t0)
        if code // 100 != 4 or time.monotonic() - t0 > 120:
            return first, code, time.monotonic() - t0
        await asyncio.sleep(1)


def phase_b(port, fresh):
    t0 = time.monotonic()
    res = asyncio.run(pool(fresh, 20, lambda a: until_verdict(port, a)))
    total = time.monotonic() - t0
    firsts = {}
    for (code, text, _), _, _ in res:
        key = f"{code} {text[:60]}" if code // 100 == 4 else str(code)
        firsts[key] = firsts.get(key, 0) + 1
    first_lat = [f[2] for f, _, _ in res]
    verdict_t = [t for _, _, t in res]
    wrong = sum(1 for a, (_, code, _) in zip(fresh, res) if code != (250 if a in KNOWN else 550))
    return firsts, first_lat, verdict_t, total, wrong


def validator_window(validator, start_len):
    """RCPT rejections and the most connections open at once, in the validator's log since start_len."""
    text = validator.log()[start_len:]
    rejects, open_now, most = 0, 0, 0
    for line in text.splitlines():
        if "reject: RCPT" in line:
            rejects += 1
        elif re.search(r"smtpd\[\d+\]: connect from", line):
            open_now += 1
            most = max(most, open_now)
        elif re.search(r"smtpd\[\d+\]: disconnect from", line):
            open_now -= 1
    return rejects, most


def phase_c(port, validator, total, names, per_session):
    dictionary = [f"w{random.getrandbits(48):012x}@example.test" for _ in range(names)]
    jobs = [[random.choice(dictionary) for _ in range(per_session)] for _ in range(total // per_session)]
    mark = len(validator.log())
    t0, own0 = time.monotonic(), backstop_cpu_s()
    res = asyncio.run(pool(jobs, 20, lambda rc: session("127.0.0.1", port, rc)))
    dt, own = time.monotonic() - t0, backstop_cpu_s() - own0
    codes = {}
    for r in res:
        for _, code, _, _ in r:
            codes[code] = codes.get(code, 0) + 1
    distinct = len({a for j in jobs for a in j})
    time.sleep(2)  # postlogd writes asynchronously; a benchmark can afford to let it settle
    rejects, most = validator_window(validator, mark)
    return codes, dt, distinct, rejects, most, own


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


def main():
    sys.stdout.reconfigure(line_buffering=True)
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=5000)
    ap.add_argument("--fresh", type=int, default=1000)
    ap.add_argument("--flood", type=int, default=100000)
    ap.add_argument("--names", type=int, default=20000)
    ap.add_argument("--phases", default="abc", help="which of the phases a, b, c to run (default abc)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (private Postfix instances)")
    random.seed(4)
    tmp = tempfile.mkdtemp(prefix="bs-bench-")
    validator = sink = pfgw = bs = None
    try:
        validator = Postfix(users=KNOWN, name="validator", procs=50)
        sink = SmtpSink()
        pfgw = postfix_gateway(validator)
        bs = Backstop(validator, sink, tmp)
        global BACKSTOP_PID
        BACKSTOP_PID = bs.proc.pid
        gws = {"backstop": bs.port, "postfix": pfgw.port}
        print(f"verify_flood: validation server Postfix {subprocess.run(['postconf', '-d', '-h', 'mail_version'], capture_output=True, text=True).stdout.strip()}"
              f" with {len(KNOWN)} users; {os.cpu_count()} cores; 20 parallel sessions\n")
        unknown = [f"nobody{i}@example.test" for i in range(200)]
        for name, port in gws.items():
            ok = warm("127.0.0.1", port, unknown)
            print(f"warm-up {name}: 200 unknown addresses verified{'' if ok else ' (NOT all within 120 s)'}")
        if "a" in args.phases:
            null_smtp = SmtpSink(extra=["-f", "rcpt"], backlog=1000)
            try:
                phase_a_all(gws, unknown, args.sessions, null_smtp)
            finally:
                null_smtp.stop()
        if "b" in args.phases:
            print_b(gws, args.fresh)
        if "c" in args.phases:
            print_c(bs.port, validator, args.flood, args.names)
    finally:
        for peer in (bs, pfgw, sink, validator):
            if peer is not None:
                peer.stop()


def phase_a_all(gws, unknown, sessions, null_smtp):
    print("\n(a) rejections/s, sessions to unknown cached recipients "
          f"({sessions} sessions: connect, EHLO, MAIL, RCPT 550, QUIT)")
    for name, port in gws.items():
        rej, dt = phase_a(port, unknown, sessions)
        print(f"    {name:9s} {rej:6d} rejected in {dt:6.2f} s = {rej / dt:7.0f} rejections/s"
              " (Python asyncio client)")
    print_a({name: phase_a_smtp_source(port, unknown[0], sessions * 4)
             for name, port in gws.items()}, "smtp-source, one cached address")
    harvest = "nobody@example.test"
    for name, port in gws.items():
        if not warm_numbered(port, harvest, 50):
            print(f"    {name}: the 50 harvest addresses were NOT all verified within 60 s")
    print_a({name: phase_a_smtp_source(port, harvest, sessions // 5, 50)
             for name, port in gws.items()}, "smtp-source, 50 cached addresses per session")
    print("  smtp_flood (bench/smtp_flood.c), also against null-smtp: smtp-sink -f rcpt, a server that"
          " only answers\n  (every RCPT 550, no lookup, no log), the most this machine's loopback TCP and"
          " client allow")
    targets = dict(gws, **{"null-smtp": null_smtp.port})
    for per_session, pipelined in ((1, False), (1, True), (50, True)):
        n = sessions * 4 if per_session == 1 else sessions * 20 // per_session  # 20,000 / 100,000 RCPTs
        print_a({name: phase_a_flood(port, n, per_session, pipelined)
                 for name, port in targets.items()},
                f"smtp_flood, {per_session} RCPT{'s' if per_session > 1 else ''} per session"
                f"{', pipelined' if pipelined else ', one command at a time'}")


def print_b(gws, count):
    print(f"\n(b) first contact, {count} fresh addresses (half known users, half unknown)")
    for name, port in gws.items():
        fresh = [random.choice(KNOWN[1000:]) if i % 2 == 0 else f"fresh{name}{i}@example.test"
                 for i in range(count)]
        fresh = list(dict.fromkeys(fresh))
        firsts, first_lat, verdict_t, total, wrong = phase_b(port, fresh)
        print(f"    {name}: first RCPT reply: " + ", ".join(f"{k} x{v}" for k, v in sorted(firsts.items())))
        print(f"    {name}: first reply latency median {statistics.median(first_lat) * 1000:.0f} ms,"
              f" p95 {pct(first_lat, 95) * 1000:.0f} ms; time to verdict median"
              f" {statistics.median(verdict_t) * 1000:.0f} ms, p95 {pct(verdict_t, 95) * 1000:.0f} ms,"
              f" max {max(verdict_t):.1f} s; all {len(fresh)} in {total:.1f} s; wrong verdicts: {wrong}")


def print_c(port, validator, flood, names):
    print(f"\n(c) dictionary flood against backstop: {flood} RCPTs of {names} random names"
          " (50 RCPTs per session)")
    codes, dt, distinct, rejects, most, own = phase_c(port, validator, flood, names, 50)
    print(f"    replies: {codes} in {dt:.1f} s = {sum(codes.values()) / dt:.0f} RCPT/s; backstop's own CPU"
          f" {own:.2f} s = {own / max(1, sum(codes.values())) * 1e6:.0f} us per RCPT")
    print(f"    distinct addresses {distinct}; probes reaching the validation server {rejects}"
          f" ({rejects / max(1, sum(codes.values())) * 100:.1f}% of RCPTs); most connections open"
          f" at once at the validator: {most} (callout_max_connections = 2)")


if __name__ == "__main__":
    main()
