"""A scriptable fake SMTP backend on 127.0.0.1 for the in-line delivery tests.

One thread accepts; one thread per connection speaks SMTP. `faults` maps a step to an action:

  steps:   banner, ehlo, starttls, mail, rcpt, data, body (after `body_fault_after` octets of
           content), dot (final dot received, before replying), after (after the 250 to the dot;
           a 421 or garbage line leaves in the same write as that 250)
  actions: "close"   close the connection at once
           "stall"   say nothing more; keep reading (and discarding) until the peer closes
           "freeze"  say nothing more and stop reading (the peer's writes back up) until stop()
           "hold"    say nothing until `release` is set, then go on as if there were no fault
           "421"     send a 421 reply, then close
           "garbage" send a line that is no SMTP reply, then keep reading until the peer closes
           "NNN ..." any other string is sent as the reply (e.g. "550 5.1.1 No such user"); with
                     "\r\n" inside, several lines leave in one write (a backend out of step)
With `fault_connections=N` the faults apply to the first N connections only (later ones are
well-behaved), so that a test can show the next delivery goes through a fresh connection.

The parser is deliberately lenient about line ends (a bare LF ends a line, as in many MTAs) so
that any smuggled end-of-data that reaches it shows up as a second message. What it got is kept
in `messages` (raw content as received, still dot-stuffed, plus the envelope); with
store=False only the size and a SHA-256 of the un-stuffed content are kept (for 100 MB runs).
`busy_over`=N answers 421 at the greeting to a connection that finds N others open, as Postfix
(smtpd_client_connection_count_limit) and Exchange (MaxInboundConnectionPerSource) do; `max_active`
is the most connections that were open at once.
Nothing here sleeps: waits are on events with deadlines. A slow backend is scripted with
`body_read_rate` (content read at most this many octets a second, through a small receive
buffer, so that the sender's backlog grows) and `dot_delay` (seconds before the reply to the
final dot): that is the peer's behaviour, not synchronisation.
"""
import hashlib
import socket
import ssl
import threading

DEFAULT_EXTS = ("PIPELINING", "SIZE 0", "8BITMIME", "ENHANCEDSTATUSCODES", "DSN", "SMTPUTF8")
STEPS = ("banner", "ehlo", "starttls", "mail", "rcpt", "data", "body", "dot", "after")
ACTIONS = ("close", "stall", "freeze", "421", "garbage", "hold")


class _Stop(Exception):
    """The script ended the session."""


class Message:
    def __init__(self):
        self.mail_from = None
        self.rcpts = []
        self.raw = bytearray()   # content as received on the wire (dot-stuffed), store=True
        self.received = b""      # the first header if it is a Received: (backstop's)
        self.size = 0            # un-stuffed octets after that header
        self.sha256 = hashlib.sha256()  # of the same octets
        self.tls = False
        self.acked = False

    @property
    def content(self):
        """Un-stuffed content, CRLF lines as received (store=True only)."""
        out = []
        for line in bytes(self.raw).split(b"\n"):
            out.append(line[1:] if line.startswith(b".") else line)
        return b"\n".join(out)


class FakeBackend:
    def __init__(self, faults=None, exts=DEFAULT_EXTS, tls_files=None, store=True,
                 body_fault_after=65536, rcpt_reply=None, mail_reply=None, banner=None, rcpt_delay=0.0,
                 body_read_rate=0, dot_delay=0.0, busy_over=None, fault_connections=0):
        self.faults = dict(faults or {})
        self.fault_connections = fault_connections  # 0: faults on every connection
        for step, action in self.faults.items():
            assert step in STEPS, step
        self.exts = list(exts)
        self.tls_ctx = None
        if tls_files:
            self.tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls_ctx.load_cert_chain(str(tls_files[0]), str(tls_files[1]))
            self.exts.append("STARTTLS")
        self.store = store
        self.body_fault_after = body_fault_after
        self.rcpt_reply = rcpt_reply      # callable(addr) -> reply line, or None for 250
        self.mail_reply = mail_reply
        self.rcpt_delay = rcpt_delay      # seconds before each RCPT reply: a backend that ponders
        self.banner = banner or "220 fake.backend.test ESMTP fake"
        self.body_read_rate = body_read_rate  # octets/s of content read; 0 = as fast as it comes
        self.dot_delay = dot_delay            # seconds before the reply to the final dot
        self.lock = threading.Condition()
        self.connections = 0
        self.commands = []                # every command line received, in order
        self.messages = []                # completed (final dot seen) messages
        self.faulted = []                 # steps at which a fault fired
        self.active = 0
        self.max_active = 0
        self.busy_over = busy_over
        self._stop = threading.Event()
        self.release = threading.Event()  # ends a "hold"
        self._threads = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if body_read_rate:
            # inherited by accepted sockets: a small window and small segments keep the sender's
            # kernel buffer small too, so that what the sender queues is mostly its own backlog
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1024)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.addr = f"127.0.0.1:{self.port}"
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()

    # -- public helpers ------------------------------------------------------------------------

    @property
    def acked(self):
        with self.lock:
            return [m for m in self.messages if m.acked]

    def wait_for(self, predicate, timeout=10.0):
        """Wait until predicate(self) is true (checked whenever the fake's state changes)."""
        with self.lock:
            ok = self.lock.wait_for(lambda: predicate(self), timeout)
        assert ok, f"fake backend: condition not met within {timeout}s " \
                   f"(connections={self.connections} faulted={self.faulted} messages={len(self.messages)})"

    def stop(self):
        self._stop.set()
        self.release.set()
        try:
            self.sock.close()
        except OSError:
            pass
        for t in list(self._threads):
            t.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.stop()

    # -- the server ----------------------------------------------------------------------------

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.active += 1
                self.max_active = max(self.max_active, self.active)
                busy = self.busy_over is not None and self.active > self.busy_over
                self.lock.notify_all()
                number = self.connections
            t = threading.Thread(target=self._serve, args=(conn, number, busy), daemon=True)
            self._threads = [x for x in self._threads if x.is_alive()] + [t]
            t.start()

    def _serve(self, conn, number, busy=False):
        sess = _Session(self, conn, number)
        try:
            if busy:
                self._note(faulted="busy")
                sess.send("421 4.7.0 fake.backend.test Error: too many connections from 127.0.0.1")
                raise _Stop()
            sess.run()
        except (_Stop, OSError, ssl.SSLError, ValueError):
            pass
        finally:
            try:
                sess.sock.close()
            except OSError:
                pass
            with self.lock:
                self.active -= 1
                self.lock.notify_all()

    def _note(self, **kw):
        with self.lock:
            for k, v in kw.items():
                getattr(self, k).append(v)
            self.lock.notify_all()


class _Session:
    def __init__(self, fake, sock, number=1):
        self.fake = fake
        self.faulty = not fake.fault_connections or number <= fake.fault_connections
        self.sock = sock
        self.sock.settimeout(120)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.tls = False

    # -- I/O -----------------------------------------------------------------------------------

    def _fill(self):
        chunk = self.sock.recv(262144)
        if not chunk:
            raise _Stop()
        self.buf += chunk

    def line(self):
        while b"\n" not in self.buf:
            if len(self.buf) > 1 << 20:
                raise _Stop()
            self._fill()
        line, self.buf = self.buf.split(b"\n", 1)
        return line + b"\n"

    def send(self, text):
        self.sock.sendall(text.encode() + b"\r\n")

    def fault(self, step, prefix=b""):
        """Apply the fault scripted for step, if any. Returns a reply line to use instead of the
        normal one, or None; raises _Stop when the session ends here. prefix leaves in the same
        write as a 421 or garbage line."""
        action = self.fake.faults.get(step) if self.faulty else None
        if action is None:
            return None
        self.fake._note(faulted=step)
        if action == "close":
            raise _Stop()
        if action == "421":
            self.sock.sendall(prefix + b"421 4.3.2 fake backend shutting down\r\n")
            raise _Stop()
        if action == "garbage":
            self.sock.sendall(prefix + b"this is not an SMTP reply \x01\xff\r\n")
            self._drain()
        if action == "stall":
            self._drain()
        if action == "freeze":
            self.fake._stop.wait(120)
            raise _Stop()
        if action == "hold":
            self.fake.release.wait(120)
            return None
        return action

    def _drain(self):
        while True:
            self.buf = b""
            self._fill()

    # -- the dialogue --------------------------------------------------------------------------

    def run(self):
        self.send(self.fault("banner") or self.fake.banner)
        msg = None
        while True:
            raw = self.line()
            cmd = raw.rstrip(b"\r\n").decode("utf-8", "replace")
            self.fake._note(commands=cmd)
            verb = cmd.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self.send(self.fault("ehlo") or self._ehlo_reply())
            elif verb == "HELO":
                self.send("250 fake.backend.test")
            elif verb == "STARTTLS" and self.fake.tls_ctx and not self.tls:
                self.send(self.fault("starttls") or "220 2.0.0 Ready to start TLS")
                assert self.buf == b"", "pipelined bytes after STARTTLS"
                self.sock = self.fake.tls_ctx.wrap_socket(self.sock, server_side=True)
                self.tls = True
            elif verb == "MAIL":
                msg = Message()
                msg.mail_from = cmd[10:]
                msg.tls = self.tls
                rep = self.fault("mail") or (self.fake.mail_reply or "250 2.1.0 Ok")
                if not rep.startswith("2"):
                    msg = None
                self.send(rep)
            elif verb == "RCPT":
                if self.fake.rcpt_delay:
                    self.fake._stop.wait(self.fake.rcpt_delay)
                rep = self.fault("rcpt")
                if rep is None:
                    rep = self.fake.rcpt_reply(cmd) if self.fake.rcpt_reply else None
                    rep = rep or "250 2.1.5 Ok"
                if msg is not None and rep.startswith("2"):
                    msg.rcpts.append(cmd[3 + 5:])
                self.send(rep if msg is not None else "503 5.5.1 Need MAIL")
            elif verb == "DATA":
                if msg is None or not msg.rcpts:
                    self.send("503 5.5.1 Need RCPT")
                    continue
                self.send(self.fault("data") or "354 End data with <CR><LF>.<CR><LF>")
                self._content(msg)
                self.fake._note(messages=msg)
                if self.fake.dot_delay:
                    self.fake._stop.wait(self.fake.dot_delay)
                rep = self.fault("dot") or "250 2.0.0 Ok: queued as FAKE"
                if rep.startswith("2"):
                    with self.fake.lock:
                        msg.acked = True
                after = self.fake.faults.get("after") if self.faulty else None
                if after in ("garbage", "421"):
                    # what follows the reply leaves in the same write, so that backstop
                    # reads both at once (a backend out of step, or closing)
                    self.fault("after", prefix=rep.encode() + b"\r\n")
                self.send(rep)
                self.fault("after")
                msg = None
            elif verb == "RSET":
                msg = None
                self.send("250 2.0.0 Ok")
            elif verb == "NOOP":
                self.send("250 2.0.0 Ok")
            elif verb == "QUIT":
                self.send("221 2.0.0 Bye")
                raise _Stop()
            else:
                self.send("502 5.5.2 Error: command not recognized")

    def _ehlo_reply(self):
        exts = [e for e in self.fake.exts if not (self.tls and e == "STARTTLS")]
        lines = ["fake.backend.test"] + exts
        return "\r\n".join(f"250{'-' if i < len(lines) - 1 else ' '}{l}"
                           for i, l in enumerate(lines))

    def _content(self, msg):
        """Read content up to a line "." (lenient: a bare LF ends a line too). Lines are cut
        out of the buffer by index so that 100 MB bodies stay linear."""
        body_fault_pending = "body" in self.fake.faults
        in_received = None
        buf, pos = self.buf, 0
        while True:
            nl = buf.find(b"\n", pos)
            if nl < 0:
                rate = self.fake.body_read_rate
                chunk = self.sock.recv(16384 if rate else 1 << 20)
                if not chunk:
                    raise _Stop()
                if rate:
                    self.fake._stop.wait(len(chunk) / rate)
                buf = buf[pos:] + chunk
                pos = 0
                continue
            line = buf[pos:nl + 1]
            pos = nl + 1
            if line in (b".\r\n", b".\n"):
                self.buf = buf[pos:]
                return
            if self.fake.store:
                msg.raw += line
            data = line[1:] if line.startswith(b".") else line
            if in_received is None:
                in_received = data.lower().startswith(b"received:")
            elif in_received and data[:1] not in (b" ", b"\t"):
                in_received = False
            if in_received:
                msg.received += data
                continue
            msg.size += len(data)
            msg.sha256.update(data)
            if body_fault_pending and msg.size >= self.fake.body_fault_after:
                body_fault_pending = False
                self.buf = buf[pos:]
                self.fault("body")
