#!/usr/bin/python3
"""bench/redis_memory.py - what backstop's verdicts cost in Redis: memory per entry and commands
per second, for doc/redis-sizing.md. Not a test: prints figures.

  (a) memory: N verdicts written the way vcache_redis.c writes them (SET backstop:[PREFIX:]v:ADDRESS
      VALUE PX TTL, VALUE "V1733560000000:86400000:callout:10.0.0.30:25"), pipelined over raw RESP,
      into an empty private redis-server; INFO memory before and after, MEMORY STATS (the key
      tables' share) and MEMORY USAGE on a sample. One run per shape: valid verdicts (24h, the
      positive_ttl default) without a prefix, the same with cache_redis_prefix = example, negative
      verdicts (5m, negative_ttl) for harvest-style names, valid verdicts whose source name makes
      the value longer than 44 bytes (Redis's embedded-string limit), and the probe locks
      (backstop:l:ADDRESS = host:pid, SET NX PX). Addresses: deterministic, mixed local parts
      (first.last, initials, roles, long ones with tags) over a few hundred domains. With the
      valid shape in place, what `backstop cache purge @DOMAIN` costs Redis: the SCAN MATCH
      walk over every key that vcache_redis.c does (COUNT 1000), without the DEL. With the
      harvest budgets' Lua script (read from src/budget_redis.c, or --budget-lua FILE), the
      budget shape: one counted unknown RCPT for each of N client addresses, 20 per /24
      (EVALSHA ... 2 backstop:b:a:ADDRESS backstop:b:n:NET/24 a ...), per key.
  (b) throughput: redis-benchmark (Debian's redis-tools) sends backstop's commands with keys and
      values of the same size: GET of a verdict, SET ... PX of a verdict, SET ... NX PX of a lock,
      one command in flight per connection (-P 1) and 16 (a worker's connection pipelines the
      lookups of all its sessions); commands per second, and Redis's own CPU per command (INFO cpu)
      which, unlike the rate, does not depend on the client sharing the machine. With the budget
      script: its EVALSHA as check_harvest.c sends it (2 keys), "g" (every connection and RCPT)
      and "a" (every unknown recipient), and the probe rate's INCRBY.

redis-server is started on a free 127.0.0.1 port in a temp dir (--save '' --appendonly no) and
stopped at the end; only its own PID is signalled.
Usage: bench/redis_memory.py [--entries 1000000] [--shapes valid,prefix,invalid,longvalue,lock,budget]
                             [--ops 200000] [--no-throughput] [--budget-lua src/budget_redis.c]
"""
import argparse
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_BENCHMARK = shutil.which("redis-benchmark") or "/usr/bin/redis-benchmark"
STORED_MS = 1733560000000
POSITIVE_TTL_MS = 86400000   # positive_ttl = 24h
NEGATIVE_TTL_MS = 300000     # negative_ttl = 5m
LOCK_TTL_MS = 20000          # min(verify_timeout, 30s)
SOURCE = "callout:10.0.0.30:25"
LONG_SOURCE = "callout:validation.mail.example.net:25"
OWNER = "mx1.example.net:12345"
HARVEST_ARGS = (25, 3600000, 3600000, 100, 3600000, 3600000)  # harvest_limit 25/1h, network 100/1h, penalty 1h


def budget_lua(path):
    """The Lua text of budget_redis_lua[] in a C file (adjacent string literals), or None."""
    try:
        with open(path) as f:
            c = f.read()
    except OSError:
        return None
    m = re.search(r"budget_redis_lua\[\]\s*=(.*?);\n", c, re.S)
    if not m:
        return None
    body = re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S)
    lits = re.findall(r'"((?:[^"\\]|\\.)*)"', body)
    return "".join(lits).encode().decode("unicode_escape")

FIRST = ("anna ben carla david emma felix greta hans ines jan karin lukas maria nils olga paul "
         "rosa stefan tina uwe vera walter xenia yusuf zoe alexander christine friedrich johanna "
         "maximilian sebastian katharina wolfgang elisabeth").split()
LAST = ("mueller schmidt schneider fischer weber meyer wagner becker schulz hoffmann koch richter "
        "klein wolf neumann schwarz zimmermann braun krueger hofmann hartmann lange schmitt werner "
        "krause meier lehmann schmid schulze maier koehler herrmann koenig walter mayer huber kaiser "
        "fuchs peters lang scholz moeller weiss jung hahn vogel friedrich keller guenther frank "
        "berger winkler roth beck lorenz baumann franke albrecht schuster simon ludwig boehm winter").split()
ROLES = "info contact sales support office admin billing jobs press hr team service kontakt mail".split()
WORDS = ("alpha nova nord sued berg tal stadt werk haus bau tech data net mail web soft medien "
         "handel logistik consult partner gruppe energie klinik schule verlag reisen sport").split()
TLDS = ("de", "com", "net", "org", "eu", "at", "ch", "info")


def domains(rng, n=300):
    """A provider's own few domains, the most used, then hosted ones of varied length."""
    own = ["mail.example", "example.net", "example-online.de"]
    hosted = set()
    while len(hosted) < n - len(own):
        w = rng.choice(WORDS) + rng.choice(["", "-", ""]) + rng.choice(WORDS) + rng.choice(["", "", str(rng.randint(1, 99))])
        hosted.add(f"{w}.{rng.choice(TLDS)}")
    return own, sorted(hosted)


def valid_local(rng):
    f, l = rng.choice(FIRST), rng.choice(LAST)
    r = rng.random()
    if r < 0.30:
        return f"{f}.{l}"
    if r < 0.50:
        return f"{f[0]}{l}{rng.randint(1, 99)}" if rng.random() < 0.5 else f"{f}{l}{rng.randint(1950, 2010)}"
    if r < 0.70:
        return f"{f[0]}.{l}"
    if r < 0.85:
        return rng.choice(ROLES) if rng.random() < 0.5 else f"{rng.choice(ROLES)}-{rng.choice(WORDS)}"
    return f"{f}.{rng.choice(FIRST)}.{l}" if rng.random() < 0.5 else f"{f}.{l}+{rng.choice(WORDS)}{rng.randint(1, 999)}"


def harvest_local(rng):
    """What a directory harvest tries: names, initials, dictionary words, random strings."""
    r = rng.random()
    if r < 0.4:
        return rng.choice(FIRST) + rng.choice(["", ".", "_"]) + rng.choice(LAST)
    if r < 0.6:
        return rng.choice(FIRST)[0] + rng.choice(LAST) + str(rng.randint(0, 999))
    if r < 0.8:
        return rng.choice(WORDS + ROLES) + str(rng.randint(0, 9999))
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(rng.randint(6, 14)))


def addresses(kind, n, seed=13):
    """n distinct lower-case addresses (backstop keys its cache by the full address), generated."""
    rng = random.Random(seed)
    own, hosted = domains(rng)
    local = harvest_local if kind == "invalid" else valid_local
    seen = set()
    while len(seen) < n:
        d = rng.choice(own) if rng.random() < 0.6 else rng.choice(hosted)
        a = f"{local(rng)}@{d}"
        while a in seen:
            a = f"{a.split('@')[0]}{rng.randint(1, 9999)}@{d}"
        seen.add(a)
        yield a


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class Conn:
    """Raw RESP over a socket: pipelined writes, a small reply reader."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.f = self.s.makefile("rb")

    def read(self):
        line = self.f.readline()
        t, rest = line[:1], line[1:-2]
        if t in (b"+", b"-"):
            return rest.decode()
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self.f.read(n + 2)[:-2].decode()
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RuntimeError(f"unexpected reply {line!r}")

    def cmd(self, *args):
        self.s.sendall(resp(*args))
        r = self.read()
        if isinstance(r, str) and r.startswith("ERR"):
            raise RuntimeError(r)
        return r

    def pipeline(self, cmds, batch=5000):
        for i in range(0, len(cmds), batch):
            chunk = cmds[i:i + batch]
            self.s.sendall(b"".join(chunk))
            for _ in chunk:
                r = self.read()
                if r not in ("OK", None) and not isinstance(r, list):
                    raise RuntimeError(f"reply {r!r}")


class Redis:
    def __init__(self, tmp):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", tmp, "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--logfile", os.path.join(tmp, "log"),
             "--protected-mode", "no"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.c = Conn(self.port)
                if self.c.cmd("PING") == "PONG":
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)  # polling the port until it listens

    def info(self, section):
        text = self.c.cmd("INFO", section)
        return dict(l.split(":", 1) for l in text.splitlines() if ":" in l)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def shape_commands(shape, n, batch=5000):
    """The key and value of each entry of a shape, as backstop writes them; batches of SET commands."""
    prefix = "backstop:example:" if shape == "prefix" else "backstop:"
    if shape == "budget":
        sha = BUDGET_SHA[0]
        cmds = []
        for i in range(n):
            ip = f"10.{i // 5100 % 256}.{i // 20 % 255}.{i % 20 + 1}"
            net = ip.rsplit(".", 1)[0] + ".0/24"
            cmds.append((f"{prefix}b:a:{ip}", resp("EVALSHA", sha, 2, f"{prefix}b:a:{ip}", f"{prefix}b:n:{net}", "a",
                                                   *HARVEST_ARGS)))
            if len(cmds) == batch:
                yield "(script)", cmds
                cmds = []
        if cmds:
            yield "(script)", cmds
        return
    if shape == "lock":
        kind, value, ttl, extra = "l", OWNER, LOCK_TTL_MS, ("NX",)
    else:
        verdict, ttl = ("I", NEGATIVE_TTL_MS) if shape == "invalid" else ("V", POSITIVE_TTL_MS)
        kind, value, extra = "v", f"{verdict}{STORED_MS}:{ttl}:{LONG_SOURCE if shape == 'longvalue' else SOURCE}", ()
    cmds = []
    for a in addresses("invalid" if shape == "invalid" else "valid", n):
        key = f"{prefix}{kind}:{a}"
        cmds.append((key, resp("SET", key, value, *extra, "PX", ttl)))
        if len(cmds) == batch:
            yield value, cmds
            cmds = []
    if cmds:
        yield value, cmds


def measure_memory(r, shape, n):
    r.c.cmd("FLUSHALL")
    time.sleep(0.2)  # let lazy frees settle before the baseline
    before = r.info("memory")
    klen = 0
    sample = []
    every = max(1, n // 2000)
    secs = 0.0
    for value, cmds in shape_commands(shape, n):
        t0 = time.perf_counter()
        r.c.pipeline([c for _, c in cmds])
        secs += time.perf_counter() - t0
        klen += sum(len(k) for k, _ in cmds)
        sample += [k for k, _ in cmds[::every]]
    after = r.info("memory")
    stats = r.c.cmd("MEMORY", "STATS")
    db0 = dict(zip(stats[::2], stats[1::2])).get("db.0", [])
    db0 = dict(zip(db0[::2], db0[1::2]))
    usage = sum(r.c.cmd("MEMORY", "USAGE", k, "SAMPLES", "0") for k in sample) / len(sample)
    dbsize = r.c.cmd("DBSIZE")
    used = int(after["used_memory"]) - int(before["used_memory"])
    tables = db0.get("overhead.hashtable.main", 0) + db0.get("overhead.hashtable.expires", 0)
    scan = scan_cost(r) if shape == "valid" else None
    if shape == "budget":
        value = r.c.cmd("GET", sample[0])
    return {"scan": scan, "rss": int(after["used_memory_rss"]), "shape": shape, "n": dbsize, "klen": klen / n, "vlen": len(value), "example": sample[0], "value": value,
            "used": used, "per": used / dbsize, "tables": tables, "usage": usage, "allocator": after["mem_allocator"],
            "write_per_s": n / secs}


def scan_cost(r, glob="backstop:v:*@example.net"):
    """The SCAN walk of a purge of @example.net: calls, matches, seconds, Redis CPU seconds."""
    cpu0, t0 = r.info("cpu"), time.perf_counter()
    cursor, calls, found = "0", 0, 0
    while True:
        cursor, keys = r.c.cmd("SCAN", cursor, "MATCH", glob, "COUNT", "1000")
        calls += 1
        found += len(keys)
        if cursor == "0":
            break
    secs, cpu1 = time.perf_counter() - t0, r.info("cpu")
    cpu = sum(float(cpu1[k]) - float(cpu0[k]) for k in ("used_cpu_user", "used_cpu_sys"))
    return {"glob": glob, "calls": calls, "found": found, "secs": secs, "cpu": cpu}


BUDGET_SHA = [None]


def slots(n):
    """Buckets of a Redis 7 dict holding n keys: the next power of two >= n."""
    s = 4
    while s < n:
        s *= 2
    return s


def bench(r, label, args, ops, pipeline, clients=50):
    cpu0 = r.info("cpu")
    out = subprocess.run([REDIS_BENCHMARK, "-h", "127.0.0.1", "-p", str(r.port), "-c", str(clients), "-n", str(ops),
                          "-P", str(pipeline), "-r", "100000", "--csv", *map(str, args)],
                         capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    cpu1 = r.info("cpu")
    rows = [l for l in out.stdout.splitlines() if l and not l.startswith('"test"')]
    if not rows:
        raise RuntimeError(f"redis-benchmark: {out.stderr.strip() or out.stdout.strip()}")
    fields = [f.strip('"') for f in rows[-1].split('","')]
    rps, p50 = float(fields[1]), float(fields[5]) if len(fields) > 5 else float("nan")
    cpu = sum(float(cpu1[k]) - float(cpu0[k]) for k in ("used_cpu_user", "used_cpu_sys"))
    if r.c.cmd("INFO", "errorstats").count("errorstat_") or "ERR" in out.stdout + out.stderr:
        raise RuntimeError(f"{label}: error replies: {r.c.cmd('INFO', 'errorstats')}")
    return {"label": label, "pipeline": pipeline, "rps": rps, "p50_ms": p50, "cpu_us": cpu / ops * 1e6}


def throughput(r, ops):
    # __rand_int__ becomes 12 digits: 38-byte keys, the mean of (a)'s valid shape. -r 100,000: the
    # SET row fills most of the key space, so most GETs find a verdict.
    key = "backstop:v:mmu__rand_int__@example.net"
    lock = "backstop:l:mmu__rand_int__@example.net"
    value = f"V{STORED_MS}:{POSITIVE_TTL_MS}:{SOURCE}"
    r.c.cmd("FLUSHALL")
    tests = [("SET verdict PX", ["SET", key, value, "PX", POSITIVE_TTL_MS]), ("GET verdict", ["GET", key]),
             ("SET lock NX PX", ["SET", lock, OWNER, "NX", "PX", LOCK_TTL_MS])]
    if BUDGET_SHA[0]:
        keys = ["backstop:b:a:10.1.__rand_int__", "backstop:b:n:10.1.__rand_int__/24"]
        tests += [("EVALSHA budget a", ["EVALSHA", BUDGET_SHA[0], 2, *keys, "a", *HARVEST_ARGS]),
                  ("EVALSHA budget g", ["EVALSHA", BUDGET_SHA[0], 2, *keys, "g", *HARVEST_ARGS]),
                  ("INCRBY rate", ["INCRBY", "backstop:r:10.0.0.30:25:1733560000", 1])]
    res = []
    for pipeline in (1, 16):
        for label, args in tests:
            res.append(bench(r, label, args, ops, pipeline))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=int, default=1000000)
    ap.add_argument("--shapes", default="valid,prefix,invalid,longvalue,lock,budget")
    ap.add_argument("--ops", type=int, default=200000, help="commands per throughput row")
    ap.add_argument("--no-throughput", action="store_true")
    ap.add_argument("--budget-lua", default=os.path.join(ROOT, "src", "budget_redis.c"),
                    help="C file holding budget_redis_lua[] (the harvest budgets' script)")
    args = ap.parse_args()
    lua = budget_lua(args.budget_lua)
    with tempfile.TemporaryDirectory(prefix="bench-redis-mem-") as tmp:
        r = Redis(tmp)
        try:
            if lua:
                BUDGET_SHA[0] = r.c.cmd("SCRIPT", "LOAD", lua)
                print(f"budget script: {args.budget_lua} (sha {BUDGET_SHA[0][:12]})")
            else:
                print(f"budget script: none in {args.budget_lua}: no budget shape nor EVALSHA rows")
            ver = r.info("server")
            print(f"redis-server {ver['redis_version']} ({r.info('memory')['mem_allocator']}), "
                  f"{args.entries:,} entries per shape, pid {r.proc.pid} on 127.0.0.1:{r.port}")
            print()
            print(f"{'shape':10} {'key B':>6} {'val B':>6} {'used_memory':>12} {'B/entry':>8} {'tables B/e':>10} "
                  f"{'MEM USAGE':>9} {'rss MiB':>8} {'writes/s':>9}")
            res = []
            for shape in args.shapes.split(","):
                if shape == "budget" and not lua:
                    continue
                m = measure_memory(r, shape, args.entries)
                res.append(m)
                print(f"{m['shape']:10} {m['klen']:6.1f} {m['vlen']:6.1f} {m['used'] / 2**20:9.1f} MiB "
                      f"{m['per']:8.1f} {m['tables'] / m['n']:10.1f} {m['usage']:9.1f} {m['rss'] / 2**20:8.0f} "
                      f"{m['write_per_s']:9,.0f}")
            print()
            for m in res:
                print(f"  {m['shape']:10} e.g. {m['example']} = {m['value']}")
            print()
            print("B/entry: (used_memory after - before) / DBSIZE; tables B/e: MEMORY STATS overhead.hashtable.main")
            print("+ .expires per entry (dictEntry, robj and the bucket arrays: 8 B x next power of two >= keys, twice);")
            print("MEM USAGE: mean MEMORY USAGE of 2,000 sampled keys (key, value, dictEntry; not the expires entry nor buckets);")
            print("rss MiB: used_memory_rss of the whole server after the shape (it keeps what earlier shapes freed).")
            for m in res:
                if m["scan"]:
                    sc = m["scan"]
                    print(f"purge @example.net over {m['n']:,} keys: SCAN MATCH {sc['glob']} COUNT 1000: {sc['calls']:,} "
                          f"calls, {sc['found']:,} keys matched, {sc['secs']:.2f} s, {sc['cpu']:.2f} s of Redis CPU")
            print()
            for m in res:
                if m["shape"] in ("lock", "budget"):
                    continue
                per_item = (m["used"] - 2 * 8 * slots(m["n"])) / m["n"]
                proj = per_item * 10_000_000 + 2 * 8 * slots(10_000_000)
                print(f"  {m['shape']:10} per entry without buckets {per_item:6.1f} B; 10,000,000 entries: "
                      f"{proj / 2**30:5.2f} GiB ({proj / 1e7:.0f} B/entry with 2 x {slots(10_000_000):,} buckets)")
            if not args.no_throughput:
                print()
                print(f"redis-benchmark, 50 connections, {args.ops:,} commands per row, keys over 100,000 values "
                      f"(client and server share this machine's {os.cpu_count()} cores):")
                print(f"{'command':16} {'pipeline':>8} {'commands/s':>11} {'p50 ms':>7} {'Redis CPU us/cmd':>17}")
                for b in throughput(r, args.ops):
                    print(f"{b['label']:16} {b['pipeline']:8} {b['rps']:11,.0f} {b['p50_ms']:7.3f} {b['cpu_us']:17.2f}")
        finally:
            r.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
