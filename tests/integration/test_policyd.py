"""The Postfix policy service (policy_listen): the protocol driven directly (pipelined requests
answered in order, malformed and oversized requests closing only their own connection, the idle
timeout, 1,000 concurrent connections and policy_max_connections, a unix socket with its mode and
group), and a private Postfix that asks backstop through check_policy_service and delivers to
smtp-sink: a known recipient is delivered, an unknown one gets Postfix's 550 with backstop's
text, a validation-server outage gives 450 (DEFER_IF_PERMIT), relaying stays Postfix's refusal.
"""
import grp
import os
import re
import resource
import socket
import stat

import pytest

from callout_fixtures import Postfix, fake  # noqa: F401  (fixture)
from conftest import SMTPConn, run_cli
from peers import read_until_closed, sink  # noqa: F401  (fixture)
from postfix_fixture import postfix_available

READY_POLICY = r"ready policy_listen=127\.0\.0\.1:(\d+)"


def req(**kw):
    """One policy request as Postfix writes it (attributes, then the empty line)."""
    a = {"request": "smtpd_access_policy", "protocol_state": "RCPT", "protocol_name": "ESMTP",
         "client_address": "192.0.2.7", "client_port": "40000", "client_name": "unknown",
         "helo_name": "client.test", "sender": "sender@client.test",
         "recipient": "alice@example.test", "recipient_count": "0", "queue_id": "",
         "instance": "1a2b.5f3c.1", "size": "0", "encryption_protocol": "", "encryption_cipher": ""}
    a.update(kw)
    return ("".join(f"{k}={v}\n" for k, v in a.items()) + "\n").encode()


class PolicyConn:
    def __init__(self, port=None, path=None, timeout=10.0):
        if path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(path)
        else:
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def answer(self):
        """The next reply: the action line's value ("DUNNO", "550 5.1.1 ...")."""
        while b"\n\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; pending {self.buf!r}")
            self.buf += chunk
        reply, self.buf = self.buf.split(b"\n\n", 1)
        assert reply.startswith(b"action=") and b"\n" not in reply, reply
        return reply[7:].decode()

    def ask(self, **kw):
        self.send(req(**kw))
        return self.answer()

    def closed(self, timeout=5.0):
        closed, data = read_until_closed(self.sock, timeout)
        self.buf += data
        return closed

    def close(self):
        self.sock.close()


def policy_gateway(**over):
    g = {"listen": "", "policy_listen": "127.0.0.1:0", "log_level": "info"}
    g.update(over)
    return g


def start_policy(backstop_factory, gateway=None, domains=None):
    """A backstop with no SMTP listener, only the policy service; returns (backstop, port)."""
    b = backstop_factory(gateway=policy_gateway(**(gateway or {})), domains=domains, wait=False)
    m = b.wait_log(READY_POLICY, timeout=10)
    b.wait_log(r"started: ")
    return b, int(m.group(1))


@pytest.fixture
def users_map(tmp_path):
    p = tmp_path / "users"
    p.write_text("alice@example.test OK\ncarol@fast.test OK\n")
    return p


def map_domains(sink_addr, users_map):
    return {"example.test": {"deliver": sink_addr, "verify": f"map:{users_map}"}}


# ---------------------------------------------------------------------------------------------
# The protocol, driven directly

def test_no_smtp_listener_answers_and_logs(backstop_factory, backend, users_map):
    b, port = start_policy(backstop_factory, domains=map_domains(backend.addr, users_map))
    assert "ready listen=" not in b.log_text()
    c = PolicyConn(port)
    assert c.ask() == "DUNNO"
    assert c.ask(recipient="bob@example.test", queue_id="4XyZ12") == "550 5.1.1 User unknown"
    # not one of our domains: Postfix's business (reject_unauth_destination), not ours
    assert c.ask(recipient="someone@elsewhere.test") == "DUNNO"
    c.close()
    line = b.wait_log(r"session=\S+ rcpt .*rcpt=<bob@example\.test> code=550 status=5\.1\.1").string
    for part in ("frontend=policy", "client=192.0.2.7", "helo=client.test", "from=<sender@client.test>",
                 "instance=1a2b.5f3c.1", "queue_id=4XyZ12", "verdict=invalid", "check=verify",
                 'reason="<bob@example.test>: Recipient address rejected: User unknown"'):
        assert part in line, line
    ok = b.wait_log(r"rcpt=<alice@example\.test> code=- status=- .*frontend=policy").string
    assert "action=DUNNO" in ok and "verdict=valid" in ok, ok


def test_pipelined_requests_answered_in_order(backstop_factory, backend, users_map, fake):
    slow = fake(known=["slow@slow.test"], rcpt_delay=0.5)
    domains = map_domains(backend.addr, users_map)
    domains["slow.test"] = {"deliver": backend.addr, "verify": f"callout:{slow.addr}"}
    b, port = start_policy(backstop_factory, gateway={"callout_timeout": "5s"}, domains=domains)
    c = PolicyConn(port)
    # one write: a slow callout first, fast map answers and DUNNOs behind it
    c.send(req(recipient="slow@slow.test") + req(recipient="bob@example.test")
           + req(protocol_state="VRFY") + req(recipient="nobody@slow.test")
           + req(recipient="alice@example.test") + req(recipient="user%host@example.test")
           + req(protocol_state="DATA", recipient=""))
    got = [c.answer() for _ in range(7)]
    assert got[0] == "DUNNO", got
    assert got[1] == "550 5.1.1 User unknown", got
    assert got[2] == "DUNNO", got
    assert got[3].startswith("550 5.1.1 "), got
    assert got[4] == "DUNNO", got
    assert got[5].startswith("550 5.7.1 ") and "routing" in got[5], got
    assert got[6] == "DUNNO", got
    c.close()
    assert slow.rcpts["slow@slow.test"] == 1 and slow.rcpts["nobody@slow.test"] == 1, slow.rcpts
    assert "action=REJECT" in b.wait_log(r"rcpt=<nobody@slow\.test> code=550").string


def test_malformed_requests_close_only_their_connection(backstop_factory, backend, users_map):
    b, port = start_policy(backstop_factory, domains=map_domains(backend.addr, users_map))
    good = PolicyConn(port)
    assert good.ask() == "DUNNO"
    bad_inputs = {
        "no equals sign": b"request=smtpd_access_policy\nthis line has no equals sign\n\n",
        "NUL byte": b"request=smtpd_access_policy\nrecipient=a\x00b@example.test\n\n",
        "name too long": b"x" * 65 + b"=1\n\n",
        "too many attributes": b"".join(b"a%d=1\n" % i for i in range(101)) + b"\n",
        "value too long": b"recipient=" + b"v" * 5000 + b"\n\n",
    }
    for what, data in bad_inputs.items():
        mark = b.mark()
        c = PolicyConn(port)
        assert c.ask() == "DUNNO"  # a good request first: the bad one comes on a live connection
        c.send(data)
        assert c.closed(), f"{what}: connection left open"
        line = b.wait_log(r"policy peer=127\.0\.0\.1:\d+ malformed request", start=mark).string
        assert "after 1 requests" in line, line
        # the neighbour is unaffected
        assert good.ask(recipient="bob@example.test") == "550 5.1.1 User unknown", what
    good.close()


def test_oversized_request_closed_others_unaffected(backstop_factory, backend, users_map):
    b, port = start_policy(backstop_factory, domains=map_domains(backend.addr, users_map))
    others = [PolicyConn(port) for _ in range(3)]
    big = PolicyConn(port)
    # each attribute within limits, the request over 16 KB: 20 lines of 1 KB, no end in sight
    big.send(b"request=smtpd_access_policy\n" + b"".join(b"x_%02d=%s\n" % (i, b"y" * 1000) for i in range(20)))
    assert big.closed()
    b.wait_log(r"malformed request \(request too long\)")
    for o in others:
        assert o.ask(recipient="bob@example.test") == "550 5.1.1 User unknown"
        assert o.ask() == "DUNNO"
        o.close()
    # a fresh connection is served too
    assert PolicyConn(port).ask() == "DUNNO"


def test_idle_connection_closed_after_policy_timeout(backstop_factory, backend, users_map):
    b, port = start_policy(backstop_factory, gateway={"policy_timeout": "1s"},
                           domains=map_domains(backend.addr, users_map))
    c = PolicyConn(port)
    assert c.ask() == "DUNNO"
    half = PolicyConn(port)
    half.send(b"request=smtpd_access_policy\nprotocol_state=RCPT\n")  # never finished
    assert c.closed(timeout=5) and half.closed(timeout=5)
    b.wait_log(r"idle for policy_timeout; closing", count=2)


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= n


def test_1000_concurrent_connections_and_the_limit(backstop_factory, backend, users_map):
    raise_nofile(4096)  # for this process and the backstop it starts
    # 500 unknown recipients from one client: no harvest budget here (test_harvest.py has them)
    b, port = start_policy(backstop_factory, gateway={"harvest_limit": "0", "harvest_network_limit": "0"},
                           domains=map_domains(backend.addr, users_map))
    conns = []
    try:
        for _ in range(1000):
            conns.append(PolicyConn(port, timeout=20))
        for i, c in enumerate(conns):
            c.send(req(recipient="alice@example.test" if i % 2 else "bob@example.test",
                       client_port=str(10000 + i)))
        for i, c in enumerate(conns):
            assert c.answer() == ("DUNNO" if i % 2 else "550 5.1.1 User unknown"), i
        # the 1001st is over policy_max_connections (1000 by default): closed at once
        extra = PolicyConn(port)
        assert extra.closed()
        b.wait_log(r"refused: policy_max_connections \(1000\) reached")
        # all 1000 still work, a second round on each
        for c in conns[::10]:
            assert c.ask() == "DUNNO"
    finally:
        for c in conns:
            c.close()
    assert len([l for l in b.log if "frontend=policy" in l]) == 1100


def test_unix_socket_mode_group_and_cleanup(backstop_factory, backend, users_map, tmp_path):
    path = tmp_path / "policy.sock"
    conf = dict(policy_listen=f"unix:{path}", policy_socket_mode="0660", policy_socket_group="postfix")
    path.write_bytes(b"")  # a plain file in the way: refused, and left alone
    first = tmp_path / "first.conf"
    first.write_text(backstop_factory.render(gateway=policy_gateway(**conf),
                                             domains=map_domains(backend.addr, users_map)))
    r = run_cli("run", "-c", first)
    assert r.returncode != 0 and "exists and is not a socket" in r.stderr, r.stderr
    assert path.read_bytes() == b""
    path.unlink()
    b = backstop_factory(gateway=policy_gateway(**conf), domains=map_domains(backend.addr, users_map),
                         wait=False)
    b.wait_log(r"ready policy_listen=unix:" + re.escape(str(path)))
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    assert st.st_gid == grp.getgrnam("postfix").gr_gid
    c = PolicyConn(path=str(path))
    assert c.ask(recipient="bob@example.test") == "550 5.1.1 User unknown"
    c.close()
    assert re.search(r"peer=unix:pid=\d+", b.log_text()) is None  # no malformed line
    b.check_clean_exit()
    assert not path.exists()


# ---------------------------------------------------------------------------------------------
# A real Postfix asking backstop

def postfix_with_policy(sink, policy, extra=""):
    return Postfix(name="policy", relay_domains="example.test", extra=f"""\
relay_recipient_maps =
relayhost = [127.0.0.1]:{sink.port}
relay_transport = smtp
smtpd_relay_restrictions =
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination, check_policy_service {policy}
smtpd_policy_service_timeout = 100s
smtpd_policy_service_max_idle = 300s
smtpd_policy_service_request_limit = 0
smtpd_policy_service_default_action = 451 4.3.5 Server configuration problem
{extra}""")


@pytest.fixture
def need_postfix():
    if not postfix_available():
        pytest.fail("Postfix tests need root and the postfix package (.ci/run installs it)")


def smtp_to(pf):
    c = SMTPConn("127.0.0.1", pf.port, timeout=30)
    assert c.banner.code == 220, c.banner
    c.ehlo()
    return c


def test_postfix_delivers_known_rejects_unknown_with_our_text(backstop_factory, need_postfix, fake, sink):
    v = fake(known=["alice@example.test"])
    b, port = start_policy(backstop_factory, gateway={"callout_timeout": "10s"}, domains={
        "example.test": {"deliver": sink.addr, "verify": f"callout:{v.addr}",
                         "reject_text": "No such mailbox here (backstop)"}})
    pf = postfix_with_policy(sink, f"inet:127.0.0.1:{port}")
    try:
        c = smtp_to(pf)
        assert c.cmd("MAIL FROM:<sender@client.test>").code == 250
        r = c.cmd("RCPT TO:<alice@example.test>")
        assert r.code == 250, r
        r = c.cmd("RCPT TO:<nobody@example.test>")
        assert (r.code, r.enhanced) == (550, "5.1.1"), r
        assert "No such mailbox here (backstop)" in r.text and "<nobody@example.test>" in r.text, r
        assert r.text.count("nobody@example.test") == 1, r  # backstop's "<addr>: " prefix left to Postfix
        r = c.cmd("RCPT TO:<stranger@elsewhere.test>")  # relaying: Postfix's own refusal
        assert r.code == 554 and "Relay access denied" in r.text, r
        assert c.cmd("DATA").code == 354
        r = c.cmd("Subject: via policy\r\n\r\nhello\r\n.")
        assert r.code == 250, r
        c.cmd("QUIT")
        c.close()
        pf.wait_log("to=<alice@example.test>, relay=127.0.0.1")
        assert "status=sent" in [l for l in pf.log().splitlines() if "to=<alice@example.test>" in l][-1]
    finally:
        pf.stop()
    line = b.wait_log(r"rcpt=<nobody@example\.test> code=550").string
    assert "frontend=policy" in line and "instance=" in line, line
    assert "elsewhere.test" not in b.log_text()  # never asked: reject_unauth_destination came first


def test_postfix_validation_outage_is_450(backstop_factory, need_postfix, sink, dead_port):
    b, port = start_policy(backstop_factory, domains={
        "example.test": {"deliver": sink.addr, "verify": f"callout:127.0.0.1:{dead_port}"}})
    pf = postfix_with_policy(sink, f"inet:127.0.0.1:{port}")
    try:
        c = smtp_to(pf)
        assert c.cmd("MAIL FROM:<sender@client.test>").code == 250
        r = c.cmd("RCPT TO:<alice@example.test>")
        assert (r.code, r.enhanced) == (450, "4.4.3"), r
        assert "verification unavailable" in r.text, r
        r = c.cmd("RCPT TO:<stranger@elsewhere.test>")
        assert r.code == 554 and "Relay access denied" in r.text, r
        c.cmd("QUIT")
        c.close()
    finally:
        pf.stop()
    line = b.wait_log(r"rcpt=<alice@example\.test> code=451 status=4\.4\.3").string
    assert "action=DEFER_IF_PERMIT" in line and "frontend=policy" in line, line


def test_postfix_over_unix_socket(backstop_factory, need_postfix, sink, users_map):
    # Postfix first: the socket goes into its queue's private/ directory, as in production
    pf = postfix_with_policy(sink, "unix:private/backstop-policy")
    try:
        path = pf.queue / "private" / "backstop-policy"
        b = backstop_factory(gateway=policy_gateway(policy_listen=f"unix:{path}", policy_socket_group="postfix"),
                             domains=map_domains(sink.addr, users_map), wait=False)
        b.wait_log(r"ready policy_listen=unix:")
        c = smtp_to(pf)
        assert c.cmd("MAIL FROM:<sender@client.test>").code == 250
        assert c.cmd("RCPT TO:<alice@example.test>").code == 250
        r = c.cmd("RCPT TO:<bob@example.test>")
        assert (r.code, r.enhanced) == (550, "5.1.1") and "User unknown" in r.text, r
        c.cmd("QUIT")
        c.close()
        b.wait_log(r"rcpt=<bob@example\.test> code=550 .*frontend=policy")
    finally:
        pf.stop()
