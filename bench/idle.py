#!/usr/bin/python3
"""Hold N (default 10,000) idle SMTP connections open to backstop on 127.0.0.1 and print its
resident memory (VmRSS from /proc/PID/status) before and after, and the cost per connection.

usage: bench/idle.py [N]        env: BACKSTOP_BIN (default build/backstop)
Raises RLIMIT_NOFILE (ours, inherited by backstop) and sets max_connections / per-IP high in a
generated config. Compared with: backstop's own idle baseline, and Postfix's one smtpd process
per session (about 1.4 MB PSS each, measured on this machine class). Not part of make test."""
import os
import re
import resource
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("BACKSTOP_BIN", os.path.join(ROOT, "build", "backstop"))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
BATCH = 500
DEADLINE = 120.0


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = min(max(want, soft), hard) if hard != resource.RLIM_INFINITY else max(want, soft)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, max(new, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def start_backstop(tmp):
    conf = os.path.join(tmp, "idle.conf")
    with open(conf, "w") as f:
        f.write("[gateway]\nlisten = 127.0.0.1:0\nhostname = mx.bench.test\nworkers = auto\n"
                f"cache = memory:\nmax_connections = {N + 1000}\nmax_connections_per_ip = {N + 1000}\n"
                "command_timeout = 1h\nlog_level = notice\nshutdown_timeout = 1s\n\n"
                "[domain example.test]\ndeliver = 127.0.0.1:1\n")
    log = open(os.path.join(tmp, "backstop.log"), "w+")
    proc = subprocess.Popen([BIN, "run", "-c", conf], stderr=log, stdout=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        log.seek(0)
        m = re.search(r"ready listen=([\d.]+):(\d+)", log.read())
        if m:
            return proc, (m.group(1), int(m.group(2))), log
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    log.seek(0)
    sys.exit("backstop did not start:\n" + log.read())


def open_batch(addr, n):
    """Connect n sockets and wait for each one's 220 banner; returns the sockets."""
    socks = [socket.create_connection(addr, timeout=30) for _ in range(n)]
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    waiting, end = set(socks), time.monotonic() + 30
    while waiting and time.monotonic() < end:
        for key, _ in sel.select(timeout=1):
            data = key.fileobj.recv(512)
            if not data.startswith(b"220"):
                raise SystemExit(f"connection {len(socks) - len(waiting)} got {data!r}")
            sel.unregister(key.fileobj)
            waiting.discard(key.fileobj)
    sel.close()
    if waiting:
        raise SystemExit(f"{len(waiting)} connections got no banner within 30 s")
    return socks


def main():
    limit = raise_nofile(N + 2048)
    if limit < N + 100:
        sys.exit(f"RLIMIT_NOFILE is {limit}; need {N + 100} (run as root or raise the hard limit)")
    with tempfile.TemporaryDirectory() as tmp:
        proc, addr, log = start_backstop(tmp)
        socks = []
        try:
            before = rss_kb(proc.pid)
            t0 = time.monotonic()
            while len(socks) < N and time.monotonic() - t0 < DEADLINE:
                socks += open_batch(addr, min(BATCH, N - len(socks)))
            elapsed = time.monotonic() - t0
            after = rss_kb(proc.pid)
            n = len(socks)
            print(f"bench/idle.py: {n} idle connections to backstop (pid {proc.pid}), "
                  f"opened in {elapsed:.1f} s")
            print(f"  VmRSS before: {before / 1024:.1f} MiB")
            print(f"  VmRSS after:  {after / 1024:.1f} MiB")
            print(f"  per connection: {(after - before) * 1024 / max(n, 1) / 1024:.1f} KiB")
            print("  compared with: backstop's own idle baseline (before), and Postfix's one smtpd "
                  f"process per session, about 1.4 MB PSS each: ~{n * 1.4 / 1024:.1f} GiB for {n}")
        finally:
            for s in socks:
                s.close()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    main()
