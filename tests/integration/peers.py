"""Peers and process readings shared by the integration tests and the benchmarks: free loopback
ports, waiting for a peer to listen, smtp-sink as a backend, the threaded loopback server under
the in-process fake servers, /proc readings of a daemon, and fixtures that stop what they made.

Nothing here sleeps to synchronise: waiting for a port polls it with a deadline (there is no
event to wait on)."""
import contextlib
import os
import socket
import socketserver
import subprocess
import threading
import time

import pytest

SMTP_SINK = "/usr/sbin/smtp-sink"


# ---------------------------------------------------------------------------------------------
# Ports

def free_port():
    """A loopback port nobody listens on now (it may be taken again before it is used)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, timeout=10.0, proc=None):
    """Wait until something accepts connections on 127.0.0.1:port; fail early if proc exits."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"process exited with {proc.returncode} before listening")
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")
            time.sleep(0.02)  # polling a port with a deadline: there is no event to wait on


def wait_accepting(host, port, proc=None, timeout=10.0):
    """Wait until host:port answers an SMTP banner (the peer is up)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"backend exited with status {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=1.0) as s:
                if s.recv(512).startswith(b"220"):
                    return
        except OSError as e:
            last = e
        # connection refused comes back at once: yield the CPU to the starting process
        time.sleep(0.02)
    raise AssertionError(f"{host}:{port} not accepting within {timeout}s: {last}")


# ---------------------------------------------------------------------------------------------
# smtp-sink

class SmtpSink:
    """/usr/sbin/smtp-sink on a free loopback port (accepts everything, keeps nothing).
    extra: more smtp-sink options, e.g. ["-W", "rcpt:1"] to answer each RCPT one second late;
    backlog: its listen backlog; user: the user it runs as (-u)."""

    def __init__(self, extra=(), backlog=256, user="postfix"):
        self.host = "127.0.0.1"
        for _ in range(5):  # the free port may be taken before smtp-sink binds it
            self.port = free_port()
            self.proc = subprocess.Popen([SMTP_SINK, "-u", user, *extra, f"{self.host}:{self.port}", str(backlog)],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
            try:
                wait_accepting(self.host, self.port, self.proc)
                return
            except AssertionError:
                self.stop()
        raise AssertionError("smtp-sink did not start")

    @property
    def addr(self):
        return f"{self.host}:{self.port}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# ---------------------------------------------------------------------------------------------
# In-process fake servers

class LoopbackServer(socketserver.ThreadingTCPServer):
    """A threaded TCP server on 127.0.0.1:0 served by a daemon thread. owner is reachable from
    the handler as self.server.owner (and under the name given, e.g. self.server.backend)."""
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # smtp-source opens many at once

    def __init__(self, handler, owner, name="owner"):
        super().__init__(("127.0.0.1", 0), handler)
        self.owner = owner
        setattr(self, name, owner)
        self.host, self.port = self.server_address
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.shutdown()
        self.server_close()


# ---------------------------------------------------------------------------------------------
# The daemon, seen from outside

def read_until_closed(sock, timeout):
    """(closed, data): whether the peer closed sock (EOF or reset) within timeout, and what it
    sent before."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True, data
            data += chunk
    except (ConnectionResetError, BrokenPipeError):
        return True, data
    except socket.timeout:
        return False, data


def proc_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def proc_connections_to(pid, ports):
    """How many of the process's TCP sockets are connected to one of these remote ports
    (/proc/PID/net/tcp{,6} matched against the inodes of its descriptors)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    n = 0
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[9] in inodes and int(fields[2].rsplit(":", 1)[1], 16) in ports:
                    n += 1
    return n


def proc_rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def proc_cpu_s(pid):
    """CPU seconds that process pid's live threads have run so far: the sum of their
    /proc/PID/task/TID/schedstat (nanoseconds, where /proc/PID/stat counts 10 ms ticks)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:  # the thread ended meanwhile
            pass
    return total / 1e9


def gateway_key_line(backstop_bin, key, value):
    """"key = value\n" if backstop_bin knows this [gateway] key, else "": the benchmarks compare
    a build with an older one, which would refuse a configuration naming a key it lacks."""
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
        f.write(f"[gateway]\nlisten = 127.0.0.1:0\ncache = memory:\n{key} = {value}\n"
                "[domain example.test]\ndeliver = 127.0.0.1:1\n")
        f.flush()
        r = subprocess.run([backstop_bin, "check-config", "-c", f.name], capture_output=True,
                           text=True, timeout=30, stdin=subprocess.DEVNULL)
    return "" if key in r.stdout + r.stderr else f"{key} = {value}\n"


# ---------------------------------------------------------------------------------------------
# Fixtures

@contextlib.contextmanager
def made_by(make_one, stop=lambda obj: obj.stop()):
    """Yield make(**kw) -> make_one(**kw); everything made is stopped on the way out."""
    made = []

    def make(**kw):
        obj = make_one(**kw)
        made.append(obj)
        return obj
    try:
        yield make
    finally:
        for obj in made:
            stop(obj)


@pytest.fixture
def sink():
    """A started smtp-sink, stopped at teardown."""
    with made_by(SmtpSink) as make:
        yield make()


@pytest.fixture
def smtp_sink():
    """smtp_sink(**kw) -> a started SmtpSink; all are stopped at teardown."""
    with made_by(SmtpSink) as make:
        yield make
