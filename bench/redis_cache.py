#!/usr/bin/python3
"""bench/redis_cache.py - two gateways sharing cache = redis:// against two independent gateways
with cache = lmdb: (same run, same machine), both verifying by callout against a fake validation
server that knows nobody (every probe answers 550 5.1.1). Not a test: prints figures.

  (a) first contact on the second gateway: the first gateway has learned N addresses; how long
      the second takes to answer them (LMDB: it probes each; Redis: it reads the first's verdicts)
      and how many probes reach the validation server;
  (b) cached RCPT latency: one session, RCPTs one at a time to cached unknown addresses, p50 and
      p99 of the reply time (Redis: each address once past the local layer, then from it);
  (c) rejection flood: bench/smtp_flood against both gateways at once (one RCPT per session,
      or --rcpts, pipelined, cached unknown addresses): rejections per second of the pair, and the gateways'
      own CPU per rejection (their threads' /proc schedstat: it holds when the clients and Redis
      share the cores).

--local-ttl sets cache_redis_local_ttl (10s): with 0s every RCPT of (b) and (c) is a Redis
round trip, the case of a gateway whose local layer does not hold the address.

Everything on 127.0.0.1: redis-server under a temp dir, the gateways with workers = 1 each.
Env BACKSTOP_BIN (default build/backstop), SMTP_FLOOD (default bench/smtp_flood beside it).
Usage: bench/redis_cache.py [--addresses 500] [--sessions 5000] [--rcpts 1] [--local-ttl 10s]
"""
import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from callout_fixtures import FakeValidator  # noqa: E402
from peers import proc_cpu_s  # noqa: E402
from redis_fixture import RedisServer  # noqa: E402

BACKSTOP_BIN = os.environ.get("BACKSTOP_BIN", str(ROOT / "build" / "backstop"))
SMTP_FLOOD = os.environ.get("SMTP_FLOOD", str(Path(BACKSTOP_BIN).parent / "bench" / "smtp_flood"))


class Gateway:
    def __init__(self, d, name, cache, validator, local_ttl, budgets=False):
        self.conf = d / f"{name}.conf"
        self.conf.write_text(
            "[gateway]\nlisten = 127.0.0.1:0\nhostname = mx.bench.test\nworkers = 1\nlog_level = notice\n"
            f"cache = {cache}\nnegative_ttl = 1h\ncache_redis_local_ttl = {local_ttl}\nmax_connections_per_ip = 10000\n"
            # one client sends every unknown address, all in one session: no error cap, no
            # probe rate, and no harvest budget unless --budgets (then counted, in Redis with
            # redis://, with limits that never trip: bench/harvest_attack.py measures tripping)
            "max_recipients = 100000\nmax_errors = 100000\n"
            + ("harvest_limit = 1000000/1h\nharvest_network_limit = 1000000/1h\n" if budgets
               else "harvest_limit = 0\nharvest_network_limit = 0\n") +
            "callout_max_rate = 0\n"
            f"[domain example.test]\ndeliver = 127.0.0.1:9\nverify = callout:{validator.addr}\n")
        self.proc = subprocess.Popen([BACKSTOP_BIN, "run", "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for line in self.proc.stderr:
            m = re.search(r"ready listen=127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(15)


def rcpt_session(port, addrs, timings=None):
    """One session, RCPT one at a time; returns the reply codes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    f = s.makefile("rb")

    def reply():
        while True:
            line = f.readline()
            if line[3:4] != b"-":
                return int(line[:3])
    reply()
    s.sendall(b"EHLO bench.test\r\n")
    reply()
    s.sendall(b"MAIL FROM:<a@bench.test>\r\n")
    reply()
    codes = []
    for a in addrs:
        t0 = time.perf_counter()
        s.sendall(f"RCPT TO:<{a}>\r\n".encode())
        codes.append(reply())
        if timings is not None:
            timings.append((time.perf_counter() - t0) * 1000)
    s.sendall(b"QUIT\r\n")
    s.close()
    return codes


def flood(gws, sessions, distinct, rcpts, redis=None):
    cpu0 = sum(proc_cpu_s(g.proc.pid) for g in gws)
    rcpu0 = proc_cpu_s(redis.proc.pid) if redis else 0.0
    procs = [subprocess.Popen([SMTP_FLOOD, "-P", "-c", "20", "-n", str(sessions), "-r", str(rcpts), "-u", str(distinct),
                               "-t", "nobody@example.test", f"127.0.0.1:{p}"], stdout=subprocess.PIPE, text=True)
             for p in (g.port for g in gws)]
    out = [dict(kv.split("=", 1) for kv in p.communicate(timeout=600)[0].split()) for p in procs]
    cpu = sum(proc_cpu_s(g.proc.pid) for g in gws) - cpu0
    rcpu = proc_cpu_s(redis.proc.pid) - rcpu0 if redis else 0.0
    rejected = sum(int(o["rcpt_5xx"]) for o in out)
    return rejected, max(float(o["seconds"]) for o in out), cpu / max(rejected, 1) * 1e6, rcpu / max(rejected, 1) * 1e6


def run(kind, d, args, v):
    d.mkdir(parents=True, exist_ok=True)
    redis = RedisServer(d, name="redis") if kind == "redis" else None
    caches = [f"redis://127.0.0.1:{redis.port}/0"] * 2 if redis else [f"lmdb:{d}/lmdb1", f"lmdb:{d}/lmdb2"]
    gws = [Gateway(d, f"{kind}{i}", c, v, args.local_ttl, args.budgets) for i, c in enumerate(caches)]
    addrs = [f"nobody{i}@example.test" for i in range(args.addresses)]
    try:
        rcpt_session(gws[0].port, addrs)                        # the first gateway learns them
        before = v.total_rcpts()
        t0 = time.perf_counter()
        codes = rcpt_session(gws[1].port, addrs)                 # (a) first contact on the second
        first = time.perf_counter() - t0
        probes = v.total_rcpts() - before
        assert set(codes) == {550}, set(codes)
        lat = []
        rcpt_session(gws[1].port, addrs, lat)                    # (b) cached
        rejected, secs, cpu_us, redis_us = flood(gws, args.sessions, args.addresses, args.rcpts, redis)  # (c)
        return {"first_s": first, "probes": probes, "p50": statistics.median(lat),
                "p99": statistics.quantiles(lat, n=100)[98], "rej_per_s": rejected / secs, "cpu_us": cpu_us,
                "redis_us": redis_us}
    finally:
        for g in gws:
            g.stop()
        if redis:
            redis.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addresses", type=int, default=500)
    ap.add_argument("--sessions", type=int, default=5000)
    ap.add_argument("--rcpts", type=int, default=1, help="RCPTs per session in (c)")
    ap.add_argument("--local-ttl", default="10s", help="cache_redis_local_ttl of the Redis gateways")
    ap.add_argument("--budgets", action="store_true",
                    help="harvest budgets counted (in Redis on the redis:// pair), with limits that never trip")
    args = ap.parse_args()
    v = FakeValidator()
    res = {}
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp:
        for kind in ("lmdb", "redis"):
            res[kind] = run(kind, Path(tmp) / kind, args, v)
    v.close()
    print(f"cache_redis_local_ttl = {args.local_ttl}, {args.rcpts} RCPT per session in the flood, harvest budgets "
          + ("counted" if args.budgets else "off"))
    print(f"{'':28}{'2 x lmdb:':>14}{'2 x redis://':>14}")
    rows = [("first contact on gw2 (s)", "first_s", "{:.2f}"), ("probes from gw2", "probes", "{}"),
            ("cached RCPT p50 (ms)", "p50", "{:.3f}"), ("cached RCPT p99 (ms)", "p99", "{:.3f}"),
            ("rejections/s, both gws", "rej_per_s", "{:.0f}"), ("gateway CPU/rejection (us)", "cpu_us", "{:.1f}"),
            ("Redis CPU/rejection (us)", "redis_us", "{:.1f}")]
    for label, k, fmt in rows:
        print(f"{label:28}{fmt.format(res['lmdb'][k]):>14}{fmt.format(res['redis'][k]):>14}")
    print(f"redis/lmdb rejection rate: {res['redis']['rej_per_s'] / res['lmdb']['rej_per_s']:.0%}; "
          f"gateway CPU per rejection, lmdb/redis: {res['lmdb']['cpu_us'] / res['redis']['cpu_us']:.0%} "
          "(the rate a gateway reaches when Redis has a host of its own)")


if __name__ == "__main__":
    main()
