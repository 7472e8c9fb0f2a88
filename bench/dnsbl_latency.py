#!/usr/bin/python3
"""bench/dnsbl_latency.py - what DNS blocklist screening (dnsbl_sites) adds to a session, with warm
DNS answers: two backstops run side by side, the same configuration but for dnsbl_sites (three
lists: two blocklists and an allowlist, like a common postscreen setup), both with dns_servers
pointed at a private nsd (tests/integration/nsd_fixture.py) serving the lists. Sessions go to
them in turn, one at a time: connect and banner, EHLO, MAIL, one RCPT, QUIT, from client
addresses 127.0.3.1-127.0.3.N (none listed, the common case; a second series from listed
addresses 127.0.4.x shows the refusal path). Every client address is first sent through once
(warm-up: the lists' answers are then in backstop's DNS cache, or for a build without one, in
nsd's memory and the kernel's), then the measured sessions cycle over the same addresses.

Reports per target p50/p90/p99 of the whole session and of the RCPT reply alone (the command
that waits for the connect decision), the p50 difference (target: under 0.1 ms), and backstop's
own CPU per session (its threads' schedstat: steadier than wall-clock on a shared machine).
Not a test: prints figures. Needs the nsd package; no root needed beyond binding 127.0.x.y.
Usage: bench/dnsbl_latency.py [--sessions 3000] [--clients 200]
"""
import argparse
import os
import re
import signal
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
from nsd_fixture import Nsd, reverse_ip  # noqa: E402
from peers import SmtpSink, proc_cpu_s  # noqa: E402

BACKSTOP_BIN = os.environ.get("BACKSTOP_BIN", str(ROOT / "build" / "backstop"))
SITES = "bl.bench=127.0.0.[2..11]*3, spam.bench*2, allow.bench=127.0.[0..255].[1..3]*-2"


class Backstop:
    def __init__(self, tmp, name, sink, dns, sites):
        self.conf = Path(tmp) / f"{name}.conf"
        dnsbl = f"dnsbl_sites = {sites}\n" if sites else ""
        self.conf.write_text(f"""[gateway]
listen = 127.0.0.1:0
hostname = mx.backstop.bench
workers = 2
log_level = notice
cache = memory:
max_connections_per_ip = 5000
dns_servers = {dns}
{dnsbl}
[domain example.test]
deliver = {sink.addr}
""")
        self.proc = subprocess.Popen([BACKSTOP_BIN, "run", "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.log = []
        deadline = time.monotonic() + 10
        for line in self.proc.stderr:
            self.log.append(line)
            m = re.search(r"ready listen=127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{name}: not ready: {''.join(self.log)}")
        else:
            raise SystemExit(f"{name}: exited: {''.join(self.log)}")
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.proc.stderr:
            self.log.append(line)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(20)


def read_reply(sock, buf):
    while True:
        while b"\n" in buf[0]:
            line, buf[0] = buf[0].split(b"\n", 1)
            if len(line) >= 4 and line[3:4] == b" ":
                return int(line[:3])
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        buf[0] += chunk


def session(port, source):
    """(seconds for the whole session, seconds for the RCPT reply, RCPT code)."""
    t0 = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = [b""]
    try:
        assert read_reply(s, buf) == 220
        s.sendall(b"EHLO client.bench\r\n")
        assert read_reply(s, buf) == 250
        s.sendall(b"MAIL FROM:<sender@remote.bench>\r\n")
        assert read_reply(s, buf) == 250
        t1 = time.perf_counter()
        s.sendall(b"RCPT TO:<user@example.test>\r\n")
        code = read_reply(s, buf)
        t2 = time.perf_counter()
        s.sendall(b"QUIT\r\n")
        read_reply(s, buf)
    finally:
        s.close()
    return time.perf_counter() - t0, t2 - t1, code


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def zones(clients):
    listed = [f"127.0.4.{i}" for i in range(1, clients + 1)]
    return {
        "bl.bench": [f"{reverse_ip(ip)} A 127.0.0.2" for ip in listed]
                    + [f'{reverse_ip(ip)} TXT "listed by bl.bench"' for ip in listed],
        "spam.bench": [f"{reverse_ip(ip)} A 127.0.0.2" for ip in listed[::2]],
        "allow.bench": ["1.0.0.127 A 127.0.5.2"],
    }


def run_series(targets, sources, n):
    """n sessions to each target, in turn; returns {name: (totals, rcpts, codes, cpu_s)}."""
    out = {name: ([], [], {}, 0.0) for name in targets}
    cpu0 = {name: proc_cpu_s(b.proc.pid) for name, b in targets.items()}
    for i in range(n):
        src = sources[i % len(sources)]
        order = list(targets.items()) if i % 2 == 0 else list(reversed(targets.items()))
        for name, b in order:
            total, rcpt, code = session(b.port, src)
            out[name][0].append(total)
            out[name][1].append(rcpt)
            out[name][2][code] = out[name][2].get(code, 0) + 1
    return {name: (t, r, c, proc_cpu_s(targets[name].proc.pid) - cpu0[name]) for name, (t, r, c, _) in out.items()}


def report(title, res, n):
    print(f"\n{title}: {n} sessions per target, in turn")
    print(f"  {'target':<22} {'session p50':>11} {'p90':>8} {'p99':>8} {'RCPT p50':>9} {'p99':>8} "
          f"{'CPU/session':>11}  replies")
    for name, (tot, rc, codes, cpu) in res.items():
        print(f"  {name:<22} {pct(tot, 50) * 1e3:>9.3f}ms {pct(tot, 90) * 1e3:>6.3f}ms {pct(tot, 99) * 1e3:>6.3f}ms "
              f"{pct(rc, 50) * 1e3:>7.3f}ms {pct(rc, 99) * 1e3:>6.3f}ms {cpu / n * 1e6:>9.1f}us  "
              + ", ".join(f"{c}x{k}" for k, c in sorted(codes.items())))
    names = list(res)
    base, scr = res[names[0]], res[names[1]]
    d_tot = (statistics.median(scr[0]) - statistics.median(base[0])) * 1e3
    d_rcpt = (statistics.median(scr[1]) - statistics.median(base[1])) * 1e3
    d_cpu = (scr[3] - base[3]) / n * 1e6
    print(f"  added by screening: session p50 {d_tot:+.3f} ms, RCPT p50 {d_rcpt:+.3f} ms, "
          f"CPU {d_cpu:+.1f} us per session  (target: p50 under 0.1 ms)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=3000, help="measured sessions per target")
    ap.add_argument("--clients", type=int, default=200, help="distinct client addresses (at most 254)")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop what was started on the way out
    clients = max(1, min(a.clients, 254))
    with tempfile.TemporaryDirectory(prefix="dnsbl-bench-") as tmp:
        ns = Nsd(Path(tmp) / "nsd", zones(clients))
        sink = SmtpSink()
        targets = {}
        try:
            targets["without dnsbl_sites"] = Backstop(tmp, "plain", sink, ns.addr, None)
            targets["with dnsbl_sites (3)"] = Backstop(tmp, "dnsbl", sink, ns.addr, SITES)
            clean = [f"127.0.3.{i}" for i in range(1, clients + 1)]
            listed = [f"127.0.4.{i}" for i in range(1, clients + 1)]
            run_series(targets, clean + listed, len(clean) + len(listed))  # warm-up
            res = run_series(targets, clean, a.sessions)
            report(f"clients listed nowhere ({clients} addresses, warm)", res, a.sessions)
            res = run_series(targets, listed, max(200, a.sessions // 5))
            report(f"listed clients ({clients} addresses, warm; refused at RCPT with dnsbl_sites)", res,
                   max(200, a.sessions // 5))
        finally:
            for b in targets.values():
                b.stop()
            sink.stop()
            ns.stop()


if __name__ == "__main__":
    main()
