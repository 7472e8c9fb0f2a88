#!/usr/bin/python3
"""What scraping /metrics costs the mail: relay_throughput.py's 20-session load (bench/smtp_flood,
1 KB messages, one session per message, through backstop to smtp-sink) run again and again in one
process run, alternately with and without a scraper that GETs /metrics every 100 ms (and the
status page / every tenth scrape). Without it, the scraper's thread still wakes every 100 ms and
does nothing: a thread waking alone changes the load's speed on a machine with idle states. Reports the median throughput and backstop's own CPU per
message of each kind of run, and the difference; then the CPU one scrape costs backstop, measured
alone. The claim to hold: scraping every 100 ms costs less than 2 % of the throughput.

usage: bench/scrape_cost.py [--messages N] [--pairs N] [--every MS]
env:   BACKSTOP_BIN (default build/backstop), SMTP_FLOOD (default bench/smtp_flood beside it).
The machine may be shared and noisy: runs alternate, medians are compared, and backstop's CPU
per message (its threads' schedstat: what other work does not inflate) is printed beside the
wall-clock rate. Not part of make test.
"""
import argparse
import http.client
import re
import statistics
import tempfile
import threading
import time

from relay_throughput import Backstop, flood, proc_cpu_s, SmtpSink


class Scraper:
    """GET /metrics every `every` seconds from a thread (one kept-alive connection)."""

    def __init__(self, addr, every, dry=False):
        host, port = addr.rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=10)
        self.every, self.count, self.bytes, self.dry = every, 0, 0, dry
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def get(self, path):
        self.conn.request("GET", path)
        r = self.conn.getresponse()
        body = r.read()
        assert r.status == 200, r.status
        self.bytes += len(body)
        self.count += 1

    def run(self):
        next_t = time.monotonic()
        while not self.stop_ev.is_set():
            if not self.dry:
                self.get("/" if self.count % 10 == 9 else "/metrics")
            next_t += self.every
            self.stop_ev.wait(max(0.0, next_t - time.monotonic()))  # a fixed rate, not a fixed gap

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *a):
        self.stop_ev.set()
        self.thread.join(10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=5000, help="messages per run (20 sessions)")
    ap.add_argument("--pairs", type=int, default=4, help="runs of each kind, alternating")
    ap.add_argument("--every", type=int, default=100, help="scrape interval, ms")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="backstop-scrape-bench-")
    sink = SmtpSink(backlog=1024)
    b = Backstop(sink.addr, tmp, extra_gateway="metrics_listen = 127.0.0.1:0")
    b.log.seek(0)
    maddr = re.search(r"ready metrics_listen=(\S+)", b.log.read()).group(1)
    rates = {False: [], True: []}
    cpus = {False: [], True: []}
    scrapes = 0
    try:
        flood(b.addr, 500, False)  # warm-up
        for i in range(2 * args.pairs):
            scraping = i % 4 in (1, 2)  # quiet, scraping, scraping, quiet, ...: neither kind always goes first
            cpu0 = proc_cpu_s(b.proc.pid)
            # the quiet runs keep the same client thread waking at the same rate, without the GET:
            # on this machine a thread that merely wakes every 100 ms changes the load's speed
            # (measured: +40 % here, CPU idle states), which is not what is measured
            with Scraper(maddr, args.every / 1000, dry=not scraping) as s:
                dt = flood(b.addr, args.messages, False)
            if scraping:
                scrapes += s.count
                size = s.bytes // max(1, s.count)
            cpus[scraping].append((proc_cpu_s(b.proc.pid) - cpu0) / args.messages)
            rates[scraping].append(args.messages / dt)
            print(f"run {i + 1:2}: {'scraping' if scraping else 'quiet   '} {args.messages / dt:8,.0f} msg/s "
                  f"{1e6 * cpus[scraping][-1]:6.0f} us CPU/msg")
        # the scrape alone: N scrapes while no mail flows
        n = 200
        s = Scraper(maddr, 0)
        cpu0 = proc_cpu_s(b.proc.pid)
        t0 = time.monotonic()
        for k in range(n):
            s.get("/metrics")
        per_scrape = (proc_cpu_s(b.proc.pid) - cpu0) / n
        wall = (time.monotonic() - t0) / n
    finally:
        b.stop()
        sink.stop()
    q, sc = statistics.median(rates[False]), statistics.median(rates[True])
    cq, cs = statistics.median(cpus[False]), statistics.median(cpus[True])
    print(f"\nbench/scrape_cost.py: {args.pairs} runs of each kind, {args.messages} messages each, "
          f"20 sessions (smtp_flood), a scrape every {args.every} ms ({scrapes} scrapes, {size:,} bytes each)")
    print(f"median throughput: quiet {q:,.0f} msg/s, scraping {sc:,.0f} msg/s: {100 * (q - sc) / q:+.1f} % cost")
    print(f"median backstop CPU per message: quiet {1e6 * cq:.0f} us, scraping {1e6 * cs:.0f} us: "
          f"{100 * (cs - cq) / cq:+.1f} %")
    print(f"one scrape alone: {1e6 * per_scrape:.0f} us of backstop's CPU ({wall * 1e3:.1f} ms wall); every "
          f"{args.every} ms that is {100 * per_scrape / (args.every / 1000):.2f} % of one core")
    load_cpu = cq * q  # backstop's CPU-seconds per second at the quiet median rate
    share = per_scrape / (args.every / 1000) / load_cpu
    print(f"at {q:,.0f} msg/s backstop spends {load_cpu:.2f} CPU-s/s on the mail: scraping adds {100 * share:.2f} % "
          f"to that, i.e. costs about {100 * share / (1 + share):.2f} % of the throughput when backstop is CPU-bound")


if __name__ == "__main__":
    main()
