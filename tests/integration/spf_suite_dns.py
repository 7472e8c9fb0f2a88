"""spf_suite_dns.py - the RFC 7208 test suite's zone data served by a real nsd (nsd_fixture.py).

load_suite() reads tests/spf/rfc7208-cases.txt (converted from rfc7208-tests.yml by
tests/spf/yaml2cases.py) into sections of zone data and cases. section_zones() turns a section's
records into zone files, one zone per top-level domain the whole suite uses (the same zone names
for every section, so that Nsd.reload() can switch sections). The suite's TIMEOUT entries ("this
name's lookups time out unless records of the asked type come first") cannot be zone data: a
small UDP relay in front of nsd (TimeoutRelay) forwards every query to nsd and drops exactly
those, so the resolver sees a real timeout. The relay also answers NXDOMAIN, as the root zone
would, for names under a top-level domain nsd does not serve ("OEMCOMPUTER", a HELO name put in
a query by a macro): nsd itself would refuse them, which a resolver reads as a server failure."""
import os
import socket
import struct
import threading
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = os.path.join(HERE, "..", "spf", "rfc7208-cases.txt")

TYPE_CODES = {"A": 1, "CNAME": 5, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28, "SPF": 99}


def _dec(field):
    return urllib.parse.unquote_to_bytes(field)


class Section:
    def __init__(self, number, description):
        self.number, self.description = number, description
        self.records = []  # (name bytes, type, value bytes | (pref, name bytes) | None)
        self.cases = []


def load_suite(path=CASES):
    sections = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = line.rstrip("\n").split(" ")
            if fields[0] == "section":
                sections.append(Section(int(fields[1]), _dec(fields[2]).decode()))
            elif fields[0] == "rr":
                name, rtype = _dec(fields[1]), fields[2]
                if rtype == "MX":
                    value = (int(fields[3]), _dec(fields[4]))
                elif rtype == "TIMEOUT":
                    value = None
                else:
                    value = _dec(fields[3]) if len(fields) > 3 else b""
                sections[-1].records.append((name, rtype, value))
            elif fields[0] == "case":
                case = {"name": _dec(fields[1]).decode()}
                for kv in fields[2:]:
                    k, _, v = kv.partition("=")
                    case[k] = _dec(v).decode("utf-8", "replace")
                case["result"] = case["result"].split(",")
                sections[-1].cases.append(case)
    return sections


def _labels(name):
    return [l for l in name.rstrip(b".").split(b".")]


def _usable(name):
    labels = _labels(name)
    return all(0 < len(l) <= 63 for l in labels) and len(name.rstrip(b".")) <= 253


def _zone_name(name):
    """A name in master-file syntax, absolute, each unusual byte as \\DDD."""
    out = []
    for label in _labels(name):
        out.append("".join(chr(b) if (chr(b).isalnum() or b in b"-_") and b < 0x80 else "\\%03d" % b
                           for b in label))
    return ".".join(out) + "."


def _txt(value):
    chunks = [value[i:i + 255] for i in range(0, len(value), 255)] or [b""]
    out = []
    for c in chunks:
        out.append('"' + "".join(chr(b) if 0x20 <= b < 0x7F and b not in b'"\\' else "\\%03d" % b
                                 for b in c) + '"')
    return " ".join(out)


def tlds(sections):
    names = {r[0] for s in sections for r in s.records if _usable(r[0])}
    return sorted({_labels(n)[-1].decode("ascii", "replace").lower() for n in names})


def section_zones(section, zone_names):
    """{tld: [record lines]} for every zone name given (empty ones serve just SOA and NS)."""
    zones = {z: [] for z in zone_names}
    for name, rtype, value in section.records:
        if rtype == "TIMEOUT" or not _usable(name):
            continue
        tld = _labels(name)[-1].decode("ascii", "replace").lower()
        owner = _zone_name(name)
        if rtype in ("A", "AAAA"):
            data = value.decode()
        elif rtype == "MX":
            data = "%d %s" % (value[0], _zone_name(value[1]) if value[1] else ".")
        elif rtype in ("PTR", "CNAME"):
            data = _zone_name(value)
        else:  # TXT, SPF
            data = _txt(value)
        zones[tld].append("%s %s %s" % (owner, rtype, data))
    # a CNAME cannot share its owner with other data in a real zone: keep the CNAME alone
    for tld, lines in zones.items():
        cnames = {l.split(" ")[0].lower() for l in lines if l.split(" ")[1] == "CNAME"}
        zones[tld] = [l for l in lines if l.split(" ")[0].lower() not in cnames or l.split(" ")[1] == "CNAME"]
    return zones


def timeout_rules(section):
    """{lowercase name: set of type codes still answered} for the section's TIMEOUT names: a
    type whose records come before the TIMEOUT entry is answered, every other one times out."""
    rules = {}
    seen = {}
    for name, rtype, _ in section.records:
        key = name.rstrip(b".").lower()
        if rtype == "TIMEOUT":
            rules.setdefault(key, set(seen.get(key, set())))
        elif key not in rules:
            seen.setdefault(key, set()).add(TYPE_CODES.get(rtype, 0))
    return rules


def _qname(msg):
    off, labels = 12, []
    while off < len(msg) and msg[off] != 0:
        n = msg[off]
        labels.append(msg[off + 1:off + 1 + n])
        off += 1 + n
    qtype = struct.unpack("!H", msg[off + 1:off + 3])[0] if off + 3 <= len(msg) else 0
    return b".".join(labels).lower(), qtype


def _nxdomain(query):
    """The reply to query: NXDOMAIN, authoritative, the question echoed."""
    off = 12
    while off < len(query) and query[off] != 0:
        off += 1 + query[off]
    question = query[12:off + 5]
    flags = 0x8000 | 0x0400 | (struct.unpack("!H", query[2:4])[0] & 0x0100) | 3
    return query[:2] + struct.pack("!HHHHH", flags, 1, 0, 0, 0) + question


class TimeoutRelay:
    """UDP on 127.0.0.1:port, forwarding to upstream (host, port) except the queries the
    current rules say time out. set_rules() switches sections; close() stops the thread."""

    def __init__(self, upstream, zone_names=()):
        self.upstream = upstream
        self.zone_names = {z.encode().lower() for z in zone_names}
        self.rules = {}
        self.dropped = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.pending = {}  # upstream query id -> client address
        self.up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.up.settimeout(0.2)
        self.running = True
        self.threads = [threading.Thread(target=self._client_loop, daemon=True),
                        threading.Thread(target=self._upstream_loop, daemon=True)]
        for t in self.threads:
            t.start()

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def set_rules(self, rules):
        self.rules = rules

    def _client_loop(self):
        while self.running:
            try:
                msg, client = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if len(msg) < 12:
                continue
            name, qtype = _qname(msg)
            rule = self.rules.get(name)
            if rule is not None and qtype not in rule:
                self.dropped += 1
                continue
            if self.zone_names and name.rsplit(b".", 1)[-1] not in self.zone_names:
                self.sock.sendto(_nxdomain(msg), client)
                continue
            self.pending[(msg[:2], name, qtype)] = client
            self.up.sendto(msg, self.upstream)

    def _upstream_loop(self):
        while self.running:
            try:
                msg, _ = self.up.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if len(msg) < 12:
                continue
            name, qtype = _qname(msg)
            client = self.pending.pop((msg[:2], name, qtype), None)
            if client:
                self.sock.sendto(msg, client)

    def close(self):
        self.running = False
        for t in self.threads:
            t.join(2)
        self.sock.close()
        self.up.close()
