"""Helpers for the hostile-client and resource tests (test_hostile_clients.py, test_resources.py):
backends (smtp-sink, fast; a fake backend that takes a second per RCPT so a disconnect can land
while the backend is deciding), backstop configs that route to them, /proc readings, log accounting of
sessions, and the seeded generator of hostile client scripts.

Reuses conftest.py's backstop_factory, Backstop and SMTPConn; nothing here sleeps to synchronise
(waiting is always for a condition, with a deadline)."""
import os
import random
import re
import socket
import struct
import threading
import time

import pytest

from fake_backend import FakeBackend
# the fast `sink` fixture (smtp-sink) and the /proc readings live in peers.py; the names stay
# importable from here for the tests
from peers import proc_connections_to, proc_fds, proc_rss_kb, sink  # noqa: F401

HOSTILE_SEED_ENV = "HOSTILE_SEED"


# ---------------------------------------------------------------------------------------------
# Seeds

def make_seed(name):
    """The seed for one test: $HOSTILE_SEED if set, else fresh; always printed (pytest -s or
    the failure report shows it) so a failing run can be repeated."""
    env = os.environ.get(HOSTILE_SEED_ENV)
    seed = int(env) if env else random.SystemRandom().randrange(1 << 32)
    print(f"{name}: seed {seed} (repeat with {HOSTILE_SEED_ENV}={seed})")
    return seed


# ---------------------------------------------------------------------------------------------
# Backends

@pytest.fixture
def slow_sink():
    """A backend that waits a second before answering each RCPT. Not smtp-sink -W rcpt:1: that
    one dies of SIGSEGV when clients hang up while it waits (Postfix 3.7.11), which is exactly
    what these tests do to it."""
    with FakeBackend(store=False, rcpt_delay=1.0) as fake:
        yield fake


def hostile_domains(sink, slow_sink=None):
    d = {"example.test": {"deliver": sink.addr}}
    if slow_sink is not None:
        d["slow.test"] = {"deliver": slow_sink.addr}
    return d


def hostile_gateway(**over):
    gw = {
        "max_connections_per_ip": 10000,
        "max_connections": 10000,
        "backend_connect_timeout": "2s",
        "backend_command_timeout": "3s",
        "backend_data_timeout": "3s",
        "backend_retry_after": "0s",
        "data_timeout": "5s",
        "command_timeout": "5s",
    }
    gw.update(over)
    return gw


# ---------------------------------------------------------------------------------------------
# The daemon, seen from outside

SESSION_RE = re.compile(r"session=(\S+) (connect|disconnect) ")


def open_sessions(b, start=0):
    """Session ids that logged connect (after log index start) and no disconnect yet."""
    opened, closed = set(), set()
    for line in b.log[start:]:
        m = SESSION_RE.search(line)
        if m:
            (opened if m.group(2) == "connect" else closed).add(m.group(1))
    return opened - closed


def wait_sessions_closed(b, start=0, timeout=30.0):
    """Every session opened since log index start has ended (freed: it logged disconnect)."""
    deadline = time.monotonic() + timeout
    while True:
        left = open_sessions(b, start)
        if not left:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(left)} sessions still open after {timeout}s: {sorted(left)[:10]}; "
                                 "tail of the log:\n" + "\n".join(b.log[-40:]))
        with b._cond:  # woken by the next log line
            b._cond.wait(0.5)


def rst_close(sock):
    """Abortive close: the peer gets a RST, not a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def transaction(b, rcpt="user@example.test", body=b"Subject: t\r\n\r\nhello\r\n", timeout=10.0):
    """One complete, well-behaved transaction; returns the reply to the final dot."""
    from conftest import SMTPConn
    with SMTPConn(b.host, b.port, timeout=timeout) as c:
        assert c.banner.code == 220, c.banner
        c.ehlo()
        r = c.cmd("MAIL FROM:<sender@client.test>")
        assert r.code == 250, r
        r = c.cmd(f"RCPT TO:<{rcpt}>")
        assert r.code == 250, r
        r = c.cmd("DATA")
        assert r.code == 354, r
        c.send(body + b".\r\n")
        final = c.reply()
        assert c.cmd("QUIT").code == 221
        return final


# ---------------------------------------------------------------------------------------------
# Hostile scripts. A script is a list of steps: ("send", bytes), ("read", seconds) to read
# what comes for a moment, ("close",) / ("rst",) / ("shut",) to end.

VERBS = ["EHLO", "HELO", "MAIL FROM:", "RCPT TO:", "DATA", "RSET", "NOOP", "QUIT", "VRFY", "EXPN",
         "HELP", "STARTTLS", "BDAT", "AUTH", "XCLIENT", "ETRN", "TURN", "", "MAIL", "RCPT"]
PARAMS = ["SIZE=", "BODY=8BITMIME", "BODY=7BIT", "SMTPUTF8", "RET=FULL", "RET=HDRS", "ENVID=",
          "NOTIFY=SUCCESS,FAILURE", "NOTIFY=NEVER", "ORCPT=rfc822;", "AUTH=<>", "X=Y", "=", "SIZE=-1",
          "SIZE=99999999999999999999999"]


def rand_text(rng, n, alphabet=None):
    if alphabet is None:
        alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_+@<>:\"\\[] %!"
    return "".join(rng.choice(alphabet) for _ in range(n))


def rand_address(rng):
    kind = rng.randrange(10)
    if kind == 0:
        return "<>"
    if kind == 1:
        return "<" + rand_text(rng, rng.randrange(0, 300)) + ">"
    if kind == 2:
        return "<\"" + rand_text(rng, rng.randrange(0, 80)) + "\"@example.test>"
    if kind == 3:
        return "<@relay.test:" + rand_text(rng, 8) + "@example.test>"
    if kind == 4:
        return rand_text(rng, rng.randrange(1, 40))  # no brackets
    if kind == 5:
        return "<postmaster>"
    if kind == 6:
        return "<" + "\u00e9l\u00e8ve" + "@example.test>"
    dom = rng.choice(["example.test", "slow.test", "elsewhere.test", "[127.0.0.1]", "EXAMPLE.TEST"])
    return f"<{rand_text(rng, rng.randrange(1, 20), 'abcxyz0123.+-')}@{dom}>"


def rand_command(rng):
    verb = rng.choice(VERBS)
    if rng.random() < 0.3:
        verb = "".join(ch.lower() if rng.random() < 0.5 else ch for ch in verb)
    if verb.upper() in ("MAIL FROM:", "RCPT TO:"):
        arg = rand_address(rng)
        for _ in range(rng.randrange(0, 4)):
            arg += " " + rng.choice(PARAMS) + rand_text(rng, rng.randrange(0, 30))
    elif verb.upper() in ("EHLO", "HELO"):
        arg = " " + rand_text(rng, rng.randrange(0, 300)) if rng.random() < 0.9 else ""
    else:
        arg = " " + rand_text(rng, rng.randrange(0, 50)) if rng.random() < 0.3 else ""
    line = (verb + arg).encode("utf-8")
    if rng.random() < 0.05:
        pos = rng.randrange(len(line) + 1)
        line = line[:pos] + rng.choice([b"\0", b"\r", b"\n", b"\xff", b"\x1b"]) + line[pos:]
    return line + rng.choice([b"\r\n"] * 8 + [b"\n", b"\r"])


def rand_body(rng):
    parts = []
    for _ in range(rng.randrange(0, 40)):
        k = rng.randrange(10)
        if k == 0:
            parts.append(b"." + rand_text(rng, rng.randrange(0, 20)).encode() + b"\r\n")  # stuffed
        elif k == 1:
            parts.append(rng.randbytes(rng.randrange(1, 200)))  # binary, bare CR/LF, NUL, 8-bit
        elif k == 2:
            parts.append(b"x" * rng.randrange(900, 3000) + b"\r\n")  # over max_line_length
        elif k == 3:
            parts.append(b"bare lf\n")
        elif k == 4:
            parts.append(b"\r\n.\r")  # almost an end
        else:
            parts.append(rand_text(rng, rng.randrange(0, 100)).encode() + b"\r\n")
    return b"".join(parts)


GOOD_PREFIX = [b"EHLO client.test\r\n", b"MAIL FROM:<a@client.test>\r\n", b"RCPT TO:<u@example.test>\r\n",
               b"DATA\r\n"]


def good_session_bytes(rng, rcpt_domain="example.test"):
    body = b"Subject: x\r\n\r\n" + rand_text(rng, rng.randrange(0, 200)).encode() + b"\r\n"
    return [b"EHLO client.test\r\n", b"MAIL FROM:<a@client.test>\r\n",
            f"RCPT TO:<u{rng.randrange(1000)}@{rcpt_domain}>\r\n".encode(), b"DATA\r\n", body,
            b".\r\n", b"QUIT\r\n"]


def script_for(rng, with_slow=True):
    """One hostile client, chosen by rng. Returns (kind, steps)."""
    kind = rng.choice(["binary", "commands", "longline", "controls", "pipelined", "data", "cut",
                       "cut_data", "after_dot", "rcpt_pending", "connect_only", "half_close"])
    end = rng.choice([("close",), ("rst",), ("read_close",)])
    if kind == "binary":
        steps = [("send", rng.randbytes(rng.randrange(1, 5000)))]
    elif kind == "commands":
        steps = [("send", b"".join(rand_command(rng) for _ in range(rng.randrange(1, 40))))]
    elif kind == "longline":
        n = rng.choice([511, 512, 513, 1100, 1113, 5000, 70000, 200000])
        tail = rng.choice([b"\r\n", b"\n", b"", b"\r\nNOOP\r\n"])
        steps = [("send", rng.choice([b"EHLO ", b"MAIL FROM:<", b"", b"RCPT TO:<"]) + b"a" * n + tail)]
    elif kind == "controls":
        junk = bytes(rng.choice([0, 13, 10, 0x80, 0xff, 0x7f, 9, 32, 65]) for _ in range(rng.randrange(1, 600)))
        steps = [("send", b"EHLO x\r\n" + junk + b"\r\nNOOP\r\n")]
    elif kind == "pipelined":
        cmds = []
        for _ in range(rng.randrange(2, 30)):
            cmds.append(rng.choice(GOOD_PREFIX) if rng.random() < 0.5 else rand_command(rng))
        steps = [("send", b"".join(cmds))]
        if rng.random() < 0.5:
            steps += [("send", rand_body(rng) + b"\r\n.\r\n" + b"QUIT\r\n")]
    elif kind == "data":
        steps = [("send", b"".join(GOOD_PREFIX)), ("read_until", b"354 ", 5.0),
                 ("send", rand_body(rng) + b"\r\n.\r\nQUIT\r\n"), ("read_until", b"221 ", 5.0)]
    elif kind in ("cut", "cut_data", "after_dot"):
        whole = b"".join(good_session_bytes(rng, "slow.test" if with_slow and rng.random() < 0.2 else "example.test"))
        if kind == "after_dot":
            cut = whole.index(b"\r\n.\r\n") + 5
        elif kind == "cut_data":
            start = whole.index(b"DATA\r\n") + 6
            cut = rng.randrange(start, len(whole))
        else:
            cut = rng.randrange(0, len(whole))
        steps = [("send", whole[:cut])]
        if rng.random() < 0.5:
            steps.insert(0, ("read", 0.05))
    elif kind == "rcpt_pending":
        dom = "slow.test" if with_slow else "example.test"
        steps = [("send", f"EHLO c\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<x@{dom}>\r\n".encode())]
        if rng.random() < 0.5:
            steps.append(("send", b"RCPT TO:<y@example.test>\r\nDATA\r\n"))
        end = rng.choice([("close",), ("rst",)])
    elif kind == "connect_only":
        steps = []
    else:  # half_close: pipelined commands, then FIN while waiting for the replies
        steps = [("send", b"EHLO c\r\nNOOP\r\nQUIT\r\n"), ("shut",), ("read_until", b"221 ", 3.0)]
        end = ("close",)
    return kind, steps + [end]


REPLY_LINE = re.compile(rb"^\d{3}([ -].*)?$")


def run_script(host, port, steps, timeout=5.0):
    """Play one script; returns the bytes received (may be partial)."""
    got = bytearray()
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        for step in steps:
            op = step[0]
            if op == "send":
                try:
                    s.sendall(step[1])
                except OSError:
                    break  # the server closed on us: that is allowed
            elif op in ("read", "read_close", "read_until"):
                marker = step[1] if op == "read_until" else None
                limit = step[-1] if op != "read_close" else 0.1
                deadline = time.monotonic() + limit
                try:
                    while time.monotonic() < deadline and not (marker and marker in got):
                        s.settimeout(max(0.01, deadline - time.monotonic()))
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        got += chunk
                except (socket.timeout, OSError):
                    pass
                if op == "read_close":
                    s.close()
            elif op == "shut":
                try:
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            elif op == "close":
                s.close()
            elif op == "rst":
                rst_close(s)
    finally:
        s.close()
    return bytes(got)


def check_reply_bytes(got):
    """Everything the server sent is CRLF-terminated reply lines (the last may be cut)."""
    lines = got.split(b"\r\n")
    for line in lines[:-1]:
        assert REPLY_LINE.match(line), f"malformed reply line {line!r} in {got[:2000]!r}"
        assert b"\n" not in line and b"\r" not in line


def run_batches(host, port, scripts, parallel=40, check=True):
    """Run (kind, steps) scripts, `parallel` at a time; returns [(kind, received bytes)]."""
    results = [None] * len(scripts)
    errors = []

    def worker(idx):
        kind, steps = scripts[idx]
        try:
            got = run_script(host, port, steps)
            if check:
                check_reply_bytes(got)
            results[idx] = (kind, got)
        except AssertionError as e:
            errors.append(f"script {idx} ({kind}): {e}")
        except OSError as e:
            results[idx] = (kind, f"oserror {e}".encode())

    for base in range(0, len(scripts), parallel):
        threads = [threading.Thread(target=worker, args=(i,))
                   for i in range(base, min(base + parallel, len(scripts)))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
            assert not t.is_alive(), "a hostile client thread is stuck"
    assert not errors, "\n".join(errors[:20])
    return results
