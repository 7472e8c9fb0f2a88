#!/usr/bin/python3
"""In-line delivery throughput: Postfix's smtp-source sends 1 KB messages (one SMTP session per
message, as an MX sees them) through backstop to smtp-sink, side by side in the same run with
  (a) smtp-source straight to smtp-sink (the upper bound: no gateway at all), and
  (b) the same load through a Postfix gateway configured the usual way (relay_domains =
      example.test, relay_transport to the same sink; its own instance under a temp dir).
Reports messages/s with 1 and 20 parallel sessions, the latency per message of one sequential
session, and backstop's VmRSS per active session while 20 and 200 sessions are mid-DATA.
smtp-source needs about as much CPU per message as the gateway it measures, and on a small
machine it shares the cores with it; the 20-session load is therefore also driven by
bench/smtp_flood (C, a few microseconds per session), one command at a time and pipelined.

usage: bench/relay_throughput.py [--messages N] [--parallel-messages N]
env:   BACKSTOP_BIN (default build/backstop), SMTP_FLOOD (default bench/smtp_flood beside the
       backstop binary). Runs only on 127.0.0.1; the Postfix comparison needs
       root and the postfix package. Not part of make test (a benchmark, not a timed test).

Note on (b): Postfix answers 250 once the message is in its queue (fsync'd) and delivers later;
its figure is the acceptance rate, and the time until its queue has drained is printed too.
"""
import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from postfix_fixture import Postfix, postfix_available  # noqa: E402
from peers import gateway_key_line, proc_cpu_s  # noqa: E402
from relay_fixtures import SmtpSink, proc_rss_kb, wait_listening  # noqa: E402

SMTP_SOURCE = "/usr/sbin/smtp-source"
BACKSTOP_BIN = os.environ.get("BACKSTOP_BIN", str(ROOT / "build" / "backstop"))
SMTP_FLOOD = os.environ.get("SMTP_FLOOD", str(Path(BACKSTOP_BIN).parent / "bench" / "smtp_flood"))


class Backstop:
    def __init__(self, sink_addr, tmp, extra_gateway=""):
        conf = Path(tmp) / "backstop.conf"
        conf.write_text(f"""[gateway]
listen = 127.0.0.1:0
hostname = mx.bench.test
workers = auto
cache = memory:
max_connections = 100000
max_connections_per_ip = 100000
log_level = notice
backend_command_timeout = 30s
backend_data_timeout = 60s
# smtp-sink takes any number of connections; the cap (16 by default) would make sessions past
# the 16th wait, and the 200 sessions mid-DATA could not all be in DATA at once
{gateway_key_line(BACKSTOP_BIN, "deliver_max_connections", 100000)}
{extra_gateway}
[domain example.test]
deliver = {sink_addr}
""")
        self.log = open(Path(tmp) / "backstop.log", "w+")
        self.proc = subprocess.Popen([BACKSTOP_BIN, "run", "-c", str(conf)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.log)
        deadline = time.monotonic() + 10
        while True:
            self.log.seek(0)
            m = re.search(r"ready listen=127\.0\.0\.1:(\d+)", self.log.read())
            if m:
                self.port = int(m.group(1))
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.log.seek(0)
                sys.exit(f"backstop did not start:\n{self.log.read()}")
            time.sleep(0.05)
        self.addr = f"127.0.0.1:{self.port}"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(15)


def source(addr, sessions, messages, size=1024, extra=()):
    """Run smtp-source; returns elapsed seconds."""
    cmd = [SMTP_SOURCE, "-s", str(sessions), "-m", str(messages), "-l", str(size),
           "-M", "client.bench.test", "-f", "sender@client.test", "-t", "user@example.test",
           *extra, addr]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    dt = time.monotonic() - t0
    if r.returncode != 0 or "rejected" in r.stdout + r.stderr or "error" in (r.stdout + r.stderr).lower():
        print(f"  smtp-source to {addr} reported: {(r.stdout + r.stderr).strip()[:400]}")
    return dt


def flood(addr, messages, pipelined):
    """Run smtp_flood with 20 sessions, one 1 KB message each; returns elapsed seconds."""
    cmd = [SMTP_FLOOD, "-c", "20", "-n", str(messages), "-m", "1024", "-f", "sender@client.test",
           "-t", "user@example.test", "-u", "0"] + (["-P"] if pipelined else []) + [addr]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    dt = time.monotonic() - t0
    if r.returncode != 0 or f"delivered={messages} " not in r.stdout:
        print(f"  smtp_flood to {addr} reported: {(r.stdout + r.stderr).strip()[:400]}")
    return dt


def mid_data_rss(b, n):
    """Open n sessions to backstop, each mid-DATA (354 received, some content sent); return the
    VmRSS delta per session in kB."""
    rss0 = proc_rss_kb(b.proc.pid)
    socks = []
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", b.port), timeout=30)
            f = s.makefile("rb")

            def reply():
                while True:
                    line = f.readline()
                    if line[3:4] != b"-":
                        return line
            reply()
            for cmd in (b"EHLO client.bench.test", b"MAIL FROM:<sender@client.test>",
                        b"RCPT TO:<user@example.test>", b"DATA"):
                s.sendall(cmd + b"\r\n")
                rep = reply()
            assert rep.startswith(b"354"), rep
            s.sendall(b"Subject: mid-data\r\n\r\n" + b"x" * 998 + b"\r\n")
            socks.append((s, f))
        time.sleep(0.5)  # measurement: let the sessions' buffers settle before reading RSS
        rss1 = proc_rss_kb(b.proc.pid)
    finally:
        for s, f in socks:
            f.close()
            s.close()
    return (rss1 - rss0) / n, rss0, rss1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=1000, help="messages for the 1-session runs")
    ap.add_argument("--parallel-messages", type=int, default=5000,
                    help="messages for the 20-session runs")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="backstop-relay-bench-")
    sink = SmtpSink(backlog=1024)
    b = Backstop(sink.addr, tmp)
    pf = None
    targets = [("smtp-sink direct", sink.addr), ("backstop -> sink", b.addr)]
    if postfix_available():
        pf = Postfix(domain="unused.test", main_extra={
            "relay_domains": "example.test",
            "relay_transport": f"relay:[127.0.0.1]:{sink.port}",
            "smtp_tls_security_level": "none",
            "relay_destination_concurrency_limit": "20",
            "default_process_limit": "200",
        })
        targets.append(("postfix -> sink", pf.addr))
    else:
        print("Postfix comparison skipped (needs root and the postfix package)")
    print(f"bench/relay_throughput.py: 1 KB messages, one SMTP session per message; "
          f"{os.cpu_count()} cores; backstop {BACKSTOP_BIN}")
    try:
        for _, addr in targets:  # warm-up
            source(addr, 5, 100)
        if pf:
            pf.wait_idle(120)
        results = {}
        for label, addr in targets:
            runs = [lambda: source(addr, 1, args.messages), lambda: source(addr, 20, args.parallel_messages),
                    lambda: flood(addr, args.parallel_messages, False),
                    lambda: flood(addr, args.parallel_messages, True)]
            times, drains, cpus = [], [], []
            for run in runs:
                cpu0 = proc_cpu_s(b.proc.pid)
                times.append(run())
                cpus.append(proc_cpu_s(b.proc.pid) - cpu0)
                t0 = time.monotonic()
                if label.startswith("postfix"):
                    pf.wait_idle(600)
                drains.append(time.monotonic() - t0)
            results[label] = (times, drains)
            if label.startswith("backstop"):
                bs_cpus = cpus
        counts = [args.messages] + [args.parallel_messages] * 3
        print(f"\n{'target':<18} {'1 session msg/s':>16} {'latency ms/msg':>15} {'20 sessions msg/s':>18}"
              f" {'smtp_flood lockstep':>20} {'smtp_flood pipelined':>21}")
        for label, (times, drains) in results.items():
            rates = [n / t for n, t in zip(counts, times)]
            print(f"{label:<18} {rates[0]:>16,.0f} {1000 * times[0] / args.messages:>15.2f} {rates[1]:>18,.0f}"
                  f" {rates[2]:>20,.0f} {rates[3]:>21,.0f}")
            if label.startswith("postfix"):
                print(f"{'':<18} (queue drained {', '.join(f'{d:.1f}' for d in drains)} s after the runs:"
                      " end-to-end " + ", ".join(f"{n / (t + d):,.0f}" for n, t, d in zip(counts, times, drains))
                      + " msg/s)")
        print(f"{'backstop CPU':<18} {1e6 * bs_cpus[0] / args.messages:>16,.0f} {'':>15}"
              + "".join(f" {1e6 * c / n:>{w},.0f}" for c, n, w in zip(bs_cpus[1:], counts[1:], (18, 20, 21)))
              + "  (us per message: backstop's own CPU from /proc, whatever else the machine runs)")
        if "postfix -> sink" in results:
            b_rates = [n / t for n, t in zip(counts, results["backstop -> sink"][0])]
            p_rates = [n / t for n, t in zip(counts, results["postfix -> sink"][0])]
            print("backstop / postfix: " + ", ".join(f"{b / p:.1f}x" for b, p in zip(b_rates, p_rates))
                  + " (same columns)")
        for n in (20, 200):
            per, r0, r1 = mid_data_rss(b, n)
            print(f"backstop VmRSS with {n} sessions mid-DATA: {r0} kB -> {r1} kB, "
                  f"{per:.1f} kB per session (client side, backend session and buffers)")
        print(f"backstop VmRSS after the runs: {proc_rss_kb(b.proc.pid)} kB")
    finally:
        b.stop()
        sink.stop()
        if pf:
            pf.stop()


if __name__ == "__main__":
    main()
