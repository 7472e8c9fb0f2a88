"""Peers for the recipient-verification tests and benchmark: a private Postfix instance as a
validation server (relay_recipient_maps, unknown users rejected at RCPT with 550 5.1.1) and an
in-process fake validation server that counts what it receives (RCPTs per address, connections,
most connections at once) and can accept everything (catch-all) or answer slowly (tarpit); the
`fake` fixture makes them. smtp-sink as the delivery backend is peers.py's.

Postfix gets its own config, queue and data directories under a temp dir (never the system's)
and is started with `postfix -c DIR start`; its log goes to maillog_file in that dir.
"""
import os
import shutil
import socketserver
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

# ports, smtp-sink and the loopback server live in peers.py; SmtpSink, free_port and
# wait_listening stay importable from here for test_verify_map.py and bench/verify_flood.py
from peers import LoopbackServer, SmtpSink, free_port, made_by, wait_listening  # noqa: F401


# ---------------------------------------------------------------------------------------------
# Fake validation server

class _FakeHandler(socketserver.StreamRequestHandler):
    def reply(self, text):
        self.wfile.write(text.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self):
        fv = self.server.fake
        fv._conn_open(+1)
        try:
            self._session(fv)
        except (ConnectionError, OSError):
            pass
        finally:
            fv._conn_open(-1)

    def _session(self, fv):
        self.reply("220 validator.test ESMTP fake")
        while True:
            line = self.rfile.readline(4096)
            if not line:
                return
            cmd = line.rstrip(b"\r\n").decode("utf-8", "replace")
            verb = cmd[:4].upper()
            if verb == "EHLO":
                self.reply("250-validator.test\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME")
            elif verb == "HELO":
                self.reply("250 validator.test")
            elif verb == "MAIL" and fv.extra_line:
                self.reply(fv.extra_line + "\r\n250 2.0.0 Ok")  # hostile: one reply too many
            elif verb in ("MAIL", "RSET", "NOOP"):
                self.reply("250 2.0.0 Ok")
            elif verb == "RCPT":
                addr = cmd[8:].strip().strip("<>").lower()
                fv._rcpt(addr)
                if fv.rcpt_delay:
                    fv.release.wait(fv.rcpt_delay)
                if addr in fv.replies:
                    self.reply(fv.replies[addr])
                elif fv.accept_all or addr in fv.known:
                    self.reply("250 2.1.5 Ok")
                elif fv.tempfail:
                    self.reply("451 4.3.0 Try again later")
                else:
                    self.reply("550 5.1.1 <%s>: Recipient address rejected: User unknown in validator.test" % addr)
            elif verb == "DATA":
                fv.data_seen += 1
                self.reply("554 5.5.1 No DATA on a validation server")
            elif verb == "QUIT":
                self.reply("221 2.0.0 Bye")
                return
            else:
                self.reply("502 5.5.2 Error: command not recognized")


class FakeValidator:
    """known: addresses answered 250; accept_all: answer 250 to everything (catch-all);
    rcpt_delay: seconds before each RCPT reply (Exchange's tarpit); tempfail: 451 for unknowns;
    replies: {address: reply line} for RCPTs of those addresses (a policy 550 5.7.1, say);
    extra_line: a line sent, unasked, before each reply to MAIL (a desynchronising server)."""

    def __init__(self, known=(), accept_all=False, rcpt_delay=0.0, tempfail=False, replies=None,
                 extra_line=None):
        self.known = {k.lower() for k in known}
        self.extra_line = extra_line
        self.replies = {k.lower(): v for k, v in (replies or {}).items()}
        self.accept_all, self.rcpt_delay, self.tempfail = accept_all, rcpt_delay, tempfail
        self.rcpts = Counter()
        self.connections = self.open_now = self.max_open = self.data_seen = 0
        self.release = threading.Event()  # set: stop tarpitting
        self._cond = threading.Condition()
        self._timers = []  # (prefix, clock, times) of record_times
        self.server = LoopbackServer(_FakeHandler, self, "fake")
        self.host, self.port = self.server.host, self.server.port
        self.addr = f"{self.host}:{self.port}"

    def _conn_open(self, d):
        with self._cond:
            self.open_now += d
            if d > 0:
                self.connections += 1
            self.max_open = max(self.max_open, self.open_now)

    def _rcpt(self, addr):
        with self._cond:
            self.rcpts[addr] += 1
            for prefix, clock, times in self._timers:
                if addr.startswith(prefix):
                    times.append(clock())
            self._cond.notify_all()

    def record_times(self, prefix, clock=time.monotonic):
        """From now on, the time (on clock) of each RCPT whose address starts with prefix: the
        list returned grows as they come (read it once the load is over)."""
        times = []
        with self._cond:
            self._timers.append((prefix, clock, times))
        return times

    def total_rcpts(self, prefix=""):
        with self._cond:
            return sum(n for a, n in self.rcpts.items() if a.startswith(prefix))

    def wait_rcpt(self, pred, timeout=10.0):
        """Wait until pred(self.rcpts) is true."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred(self.rcpts):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"validator did not see the RCPTs expected; saw {dict(self.rcpts)}")
                self._cond.wait(left)

    def close(self):
        self.release.set()
        self.server.close()


# ---------------------------------------------------------------------------------------------
# Postfix as a validation server (and, for the benchmark, as a verifying gateway)

POSTFIX_MASTER = """\
127.0.0.1:{port} inet n - n - {procs} smtpd
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
anvil     unix  -       -       n       -       1       anvil
proxymap  unix  -       -       n       -       -       proxymap
postlog   unix-dgram n  -       n       -       1       postlogd
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
smtp      unix  -       -       n       -       -       smtp
scache    unix  -       -       n       -       1       scache
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
"""


class Postfix:
    """A private Postfix: `postfix -c DIR start`, smtpd on 127.0.0.1:port only.

    users: addresses in relay_recipient_maps (the others are rejected at RCPT, 550 5.1.1).
    extra: more main.cf lines (the benchmark's verifying gateway adds its restrictions)."""

    def __init__(self, users=(), name="validator", extra="", procs=100, relay_domains="example.test"):
        self.dir = Path(tempfile.mkdtemp(prefix=f"bs-pf-{name}-"))
        os.chmod(self.dir, 0o755)  # the postfix user must get in
        self.conf, self.queue, self.data = self.dir / "conf", self.dir / "queue", self.dir / "data"
        for d in (self.conf, self.queue, self.data):
            d.mkdir()
        shutil.chown(self.data, "postfix")
        self.maillog = self.dir / "maillog"
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.syslog_name = f"bs-{name}-{self.port}"
        (self.conf / "relay_recipients").write_text("".join(f"{u} OK\n" for u in users))
        (self.conf / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {self.queue}
data_directory = {self.data}
mail_owner = postfix
setgid_group = postdrop
syslog_name = {self.syslog_name}
maillog_file = {self.maillog}
maillog_file_prefixes = {self.dir}
myhostname = validator.internal.test
mydestination =
alias_maps =
alias_database =
relay_domains = {relay_domains}
relay_recipient_maps = hash:{self.conf}/relay_recipients
mynetworks = 192.0.2.1/32
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
smtpd_relay_restrictions = reject_unauth_destination
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_recipient_rate_limit = 0
smtpd_peername_lookup = no
smtpd_soft_error_limit = 100000
smtpd_hard_error_limit = 100000
smtpd_error_sleep_time = 0
in_flow_delay = 0
smtpd_junk_command_limit = 1000000
smtpd_banner = $myhostname ESMTP
default_process_limit = {procs}
master_service_disable = pickup.unix
{extra}
""")
        (self.conf / "master.cf").write_text(POSTFIX_MASTER.format(port=self.port, procs=procs))
        subprocess.run(["postmap", "-c", str(self.conf), f"hash:{self.conf}/relay_recipients"], check=True,
                       capture_output=True, timeout=30)
        r = subprocess.run(["postfix", "-c", str(self.conf), "start"], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise AssertionError(f"postfix did not start: {r.stdout}{r.stderr}")
        wait_listening(self.port, timeout=15.0)

    def log(self):
        try:
            return self.maillog.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, needle, count=1, timeout=10.0):
        """Wait until needle appears count times in the maillog (the log is written by postlogd,
        asynchronously: we poll the file with a deadline, there is nothing to wait on)."""
        deadline = time.monotonic() + timeout
        while True:
            n = self.log().count(needle)
            if n >= count:
                return n
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} seen {n} times in Postfix's log, wanted {count}:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def rejects(self, addr):
        """RCPT rejections logged for addr."""
        return sum(1 for l in self.log().splitlines() if "reject: RCPT" in l and f"to=<{addr}>" in l)

    def stop(self):
        subprocess.run(["postfix", "-c", str(self.conf), "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def fake():
    """fake(**kw) -> a started FakeValidator; all are closed at teardown."""
    with made_by(FakeValidator, stop=lambda f: f.close()) as make:
        yield make


# [gateway] and [domain] keys of a backstop that verifies by callout against server.
def gw(**over):
    g = {"log_level": "info", "verify_timeout": "8s", "callout_timeout": "10s"}
    g.update(over)
    return g


def dom(sink, server, **over):
    d = {"deliver": sink.addr, "verify": f"callout:{server.addr}"}
    d.update(over)
    return {"example.test": d}
