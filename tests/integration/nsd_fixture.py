"""nsd_fixture.py - a private authoritative DNS server (NSD) for backstop's DNS tests.

Nsd(tmpdir, zones) writes its own nsd.conf, zone files, pid file and logs under tmpdir and runs
/usr/sbin/nsd in the foreground on 127.0.0.1 and a free port (UDP and TCP), as its own process
group so that pause() / resume() (SIGSTOP / SIGCONT to the group) make it stop answering to test
timeouts. Zones are given as text: {"bl.test": ["2.0.0.127 A 127.0.0.2", ...]} or one string per
zone; an SOA and an NS are added when the records have none. start() returns once the server
answers every zone's SOA; reload(zones) rewrites the zone files with a higher serial, sends SIGHUP
and returns once every zone answers with the new serial. A small DNS client (query()) is included
so that tests need no dnspython. Never touches the system's nsd (/etc/nsd, its pid file, its port).

    with Nsd(tmp_path, {"bl.test": ["2.0.0.127 A 127.0.0.2"]}) as ns:
        ns.addr            # "127.0.0.1:PORT", for backstop's dns_servers
        ns.query("2.0.0.127.bl.test", "A")   # -> Answer(rcode=0, records=[...])
"""
import os
import random
import signal
import socket
import struct
import subprocess
import time

import pytest

NSD = "/usr/sbin/nsd"
START_TIMEOUT = 15.0

CONF = """\
server:
    ip-address: 127.0.0.1@{port}
    port: {port}
    do-ip4: yes
    do-ip6: no
    username: ""
    chroot: ""
    zonesdir: "{tmp}"
    pidfile: "{tmp}/nsd.pid"
    database: ""
    zonelistfile: "{tmp}/zone.list"
    xfrdfile: "{tmp}/xfrd.state"
    xfrdir: "{tmp}"
    logfile: "{tmp}/nsd.log"
    server-count: 1
    verbosity: 1
    hide-version: yes
    round-robin: no
    reuseport: no
    zonefiles-check: yes
    zonefiles-write: 0
remote-control:
    control-enable: no
"""

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28,
         "SPF": 99, "ANY": 255}
TYPE_NAMES = {v: k for k, v in TYPES.items()}


class Answer:
    """A DNS reply: rcode (0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN...), aa flag, and the answer
    section as (name, type name, ttl, data) with data as text (A/AAAA address, TXT joined
    strings, SOA serial as int, other types as raw bytes)."""

    def __init__(self, rcode, aa, records):
        self.rcode, self.aa, self.records = rcode, aa, records

    def values(self, rtype):
        return [r[3] for r in self.records if r[1] == rtype]

    def __repr__(self):
        return f"Answer(rcode={self.rcode}, records={self.records!r})"


def _encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def _decode_name(msg, off):
    labels, jumped, end = [], False, off
    for _ in range(128):
        n = msg[off]
        if n & 0xC0 == 0xC0:
            if not jumped:
                end = off + 2
            off = ((n & 0x3F) << 8) | msg[off + 1]
            jumped = True
            continue
        if n == 0:
            return ".".join(labels), (end if jumped else off + 1)
        labels.append(msg[off + 1:off + 1 + n].decode("ascii", "replace"))
        off += 1 + n
    raise ValueError("name compression loop")


def _rdata(msg, rtype, off, rdlen):
    data = msg[off:off + rdlen]
    if rtype == 1:
        return socket.inet_ntop(socket.AF_INET, data)
    if rtype == 28:
        return socket.inet_ntop(socket.AF_INET6, data)
    if rtype in (16, 99):
        parts, i = [], 0
        while i < len(data):
            parts.append(data[i + 1:i + 1 + data[i]].decode("utf-8", "replace"))
            i += 1 + data[i]
        return "".join(parts)
    if rtype == 6:
        _, o = _decode_name(msg, off)
        _, o = _decode_name(msg, o)
        return struct.unpack("!I", msg[o:o + 4])[0]
    if rtype in (2, 5, 12):
        return _decode_name(msg, off)[0]
    return data


def query(server, name, rtype="A", timeout=2.0, tcp=False):
    """One query to server (host, port); returns an Answer or raises socket.timeout."""
    qid = random.randrange(65536)
    msg = struct.pack("!HHHHHH", qid, 0, 1, 0, 0, 0) + _encode_name(name) \
        + struct.pack("!HH", TYPES[rtype], 1)
    if tcp:
        with socket.create_connection(server, timeout=timeout) as s:
            s.sendall(struct.pack("!H", len(msg)) + msg)
            buf = b""
            while len(buf) < 2 or len(buf) < 2 + struct.unpack("!H", buf[:2])[0]:
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionError("DNS server closed the TCP connection")
                buf += chunk
            reply = buf[2:]
    else:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(msg, server)
            deadline = time.monotonic() + timeout
            while True:
                s.settimeout(max(0.001, deadline - time.monotonic()))
                reply, _ = s.recvfrom(65536)
                if len(reply) >= 12 and struct.unpack("!H", reply[:2])[0] == qid:
                    break
    rid, flags, qd, an, _, _ = struct.unpack("!HHHHHH", reply[:12])
    off = 12
    for _ in range(qd):
        _, off = _decode_name(reply, off)
        off += 4
    records = []
    for _ in range(an):
        rname, off = _decode_name(reply, off)
        t, _, ttl, rdlen = struct.unpack("!HHIH", reply[off:off + 10])
        off += 10
        records.append((rname, TYPE_NAMES.get(t, str(t)), ttl, _rdata(reply, t, off, rdlen)))
        off += rdlen
    return Answer(flags & 0xF, bool(flags & 0x0400), records)


def reverse_ip(ip):
    """The DNSBL query label of an address: 4.3.2.1 for 1.2.3.4, nibbles for IPv6."""
    if ":" in ip:
        packed = socket.inet_pton(socket.AF_INET6, ip)
        return ".".join(reversed("".join(f"{b:02x}" for b in packed)))
    return ".".join(reversed(ip.split(".")))


def _free_port():
    """A port free for both UDP and TCP on 127.0.0.1 (it may be taken again before nsd binds)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise AssertionError("no free UDP+TCP port on 127.0.0.1")


class Nsd:
    """A private nsd on 127.0.0.1:port serving `zones` (see the module comment)."""

    def __init__(self, tmpdir, zones, ttl=300, start=True):
        self.tmp = os.path.abspath(str(tmpdir))
        os.makedirs(self.tmp, exist_ok=True)
        self.ttl = ttl
        self.serial = 1
        self.zones = {}
        self.proc = None
        self.paused = False
        self.port = None
        self._mtime = int(time.time())
        if start:
            self.start(zones)
        else:
            self.zones = dict(zones)

    # -- addresses ---------------------------------------------------------------------------
    @property
    def server(self):
        return ("127.0.0.1", self.port)

    @property
    def addr(self):
        """"127.0.0.1:PORT", the form backstop's dns_servers takes."""
        return f"127.0.0.1:{self.port}"

    def query(self, name, rtype="A", timeout=2.0, tcp=False):
        return query(self.server, name, rtype, timeout, tcp)

    # -- files -------------------------------------------------------------------------------
    def _zone_text(self, zone, records):
        lines = records.splitlines() if isinstance(records, str) else list(records)
        types = {(l.split() + ["", "", ""])[1].upper() for l in lines if l.strip()} | \
                {(l.split() + ["", "", ""])[2].upper() for l in lines if l.strip()}
        head = [f"$ORIGIN {zone.rstrip('.')}.", f"$TTL {self.ttl}"]
        if "SOA" not in types:
            head.append(f"@ SOA ns.{zone.rstrip('.')}. hostmaster.{zone.rstrip('.')}. "
                        f"{self.serial} 3600 600 86400 {self.ttl}")
        if "NS" not in types:
            head.append(f"@ NS ns.{zone.rstrip('.')}.")
            head.append("ns A 127.0.0.1")
        return "\n".join(head + lines) + "\n"

    def _write(self, zones):
        self.zones = dict(zones)
        conf = CONF.format(port=self.port, tmp=self.tmp)
        self._mtime += 2  # nsd rereads a zone file only when its mtime changed
        for zone, records in self.zones.items():
            fname = f"{zone.rstrip('.')}.zone"
            path = os.path.join(self.tmp, fname)
            with open(path, "w") as f:
                f.write(self._zone_text(zone, records))
            os.utime(path, (self._mtime, self._mtime))
            conf += f"zone:\n    name: \"{zone.rstrip('.')}\"\n    zonefile: \"{fname}\"\n"
        self.conf = os.path.join(self.tmp, "nsd.conf")
        with open(self.conf, "w") as f:
            f.write(conf)

    def log_text(self):
        try:
            with open(os.path.join(self.tmp, "nsd.log")) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    # -- life --------------------------------------------------------------------------------
    def start(self, zones=None, timeout=START_TIMEOUT):
        """Start nsd and wait until every zone answers its SOA (bounded); a taken port is
        retried on another."""
        if zones is not None:
            self.zones = dict(zones)
        for _ in range(5):
            self.port = _free_port()
            self._write(self.zones)
            self.proc = subprocess.Popen([NSD, "-d", "-c", self.conf], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         start_new_session=True)
            try:
                self._wait_serving(timeout)
                return self
            except AssertionError as e:
                err = e
                self.stop()
                if "Address already in use" not in self.log_text() + str(e):
                    raise
        raise err

    def _wait_serving(self, timeout):
        """Poll each zone's SOA until it carries the current serial (polling with a deadline:
        nsd gives no event to wait on)."""
        deadline = time.monotonic() + timeout
        pending = list(self.zones)
        last = None
        while pending:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode("utf-8", "replace")
                raise AssertionError(f"nsd exited with {self.proc.returncode}: {err}\n"
                                     f"{self.log_text()}")
            try:
                a = self.query(pending[0], "SOA", timeout=0.5)
                if a.rcode == 0 and self.serial in a.values("SOA"):
                    pending.pop(0)
                    continue
                last = a
            except OSError as e:  # refused (not bound yet) or timed out
                last = e
            if time.monotonic() > deadline:
                raise AssertionError(f"nsd not serving {pending[0]} serial {self.serial} within "
                                     f"{timeout}s: {last}\n{self.log_text()}")
            time.sleep(0.02)

    def reload(self, zones, timeout=START_TIMEOUT):
        """Serve new zone data (same zone names, or a subset of them); returns once it is
        served. Adding a zone needs stop() + start(zones)."""
        assert self.proc is not None and not self.paused
        unknown = set(zones) - set(self.zones)
        assert not unknown, f"reload cannot add zones {unknown}: stop() and start(zones)"
        self.serial += 1
        self._write(zones)
        os.killpg(self.proc.pid, signal.SIGHUP)
        self._wait_serving(timeout)

    def pause(self):
        """Stop answering (SIGSTOP to nsd's process group): queries time out."""
        os.killpg(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self):
        os.killpg(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def stop(self):
        if self.proc is None:
            return
        try:
            if self.paused:
                self.resume()
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(5)
            self._wait_group_gone(self.proc.pid)
        finally:
            if self.proc.stderr:
                self.proc.stderr.close()
            self.proc = None

    @staticmethod
    def _wait_group_gone(pgid, timeout=10.0):
        """nsd's server and xfrd children may outlive the main process for a moment: wait
        (polling with a deadline) until the group is empty, then kill what is left."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.02)
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


@pytest.fixture
def nsd(tmp_path):
    """nsd(zones, **kw) -> a started Nsd under tmp_path; all are stopped at teardown."""
    made = []

    def make(zones, **kw):
        ns = Nsd(tmp_path / f"nsd{len(made)}", zones, **kw)
        made.append(ns)
        return ns
    try:
        yield make
    finally:
        for ns in made:
            ns.stop()
