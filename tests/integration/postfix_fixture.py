"""A private Postfix instance as backstop's backend, for the in-line delivery tests.

Everything lives under its own temp dir (config_directory, queue, data, maillog, mailboxes):
`postfix -c DIR start` / `stop`; the system's instance is never touched. Its only listener is an
smtpd on 127.0.0.1:PORT; recipients of example.test are virtual mailboxes (Maildir) listed in a
hash: map, so unknown users are refused at RCPT (550 5.1.1). `smtpd_forbid_bare_newline = no`
makes it the lenient backend that SMTP smuggling attacks count on. Needs root (Postfix's master
and virtual(8) change users) and the postfix package.
"""
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from relay_fixtures import free_port, wait_listening

MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class Postfix:
    def __init__(self, users=("alice", "bob", "victim"), domain="example.test", tls_files=None,
                 main_extra=None):
        self.root = Path(tempfile.mkdtemp(prefix="backstop-pf-"))
        os.chmod(self.root, 0o755)  # the postfix user must reach its queue and the mailboxes
        self.conf, self.queue = self.root / "etc", self.root / "queue"
        self.data, self.mail = self.root / "data", self.root / "mail"
        self.maillog = self.root / "maillog"
        for d in (self.conf, self.queue, self.data, self.mail):
            d.mkdir()
        pw = pwd.getpwnam("postfix")
        os.chown(self.data, pw.pw_uid, pw.pw_gid)
        os.chown(self.mail, pw.pw_uid, pw.pw_gid)
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.domain = domain
        self.users = list(users)
        main = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue,
            "data_directory": self.data,
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "syslog_name": f"postfix-backstop-test-{self.port}",
            "maillog_file_prefixes": self.root,
            "maillog_file": self.maillog,
            "myhostname": "backend.pf.test",
            "mydomain": "pf.test",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "reject_unauth_destination",
            "smtpd_recipient_restrictions": "",
            "smtpd_reject_unlisted_recipient": "yes",
            "virtual_mailbox_domains": domain,
            "virtual_mailbox_base": self.mail,
            "virtual_mailbox_maps": f"hash:{self.conf}/vmailbox",
            "virtual_uid_maps": f"static:{pw.pw_uid}",
            "virtual_gid_maps": f"static:{pw.pw_gid}",
            "alias_maps": "",
            "alias_database": "",
            "local_header_rewrite_clients": "",
            "smtpd_peername_lookup": "no",
            "smtpd_client_connection_rate_limit": "0",
            "smtpd_client_connection_count_limit": "0",
            "smtpd_banner": "$myhostname ESMTP",
            "smtpd_forbid_bare_newline": "no",
            "message_size_limit": "0",
            "mailbox_size_limit": "0",
            "virtual_mailbox_limit": "0",
            "default_process_limit": "100",
        }
        if tls_files:
            main.update({"smtpd_tls_security_level": "may",
                         "smtpd_tls_cert_file": tls_files[0], "smtpd_tls_key_file": tls_files[1],
                         "smtpd_tls_received_header": "yes"})
        main.update(main_extra or {})
        (self.conf / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in main.items()))
        (self.conf / "master.cf").write_text(MASTER_CF.format(port=self.port))
        (self.conf / "vmailbox").write_text(
            "".join(f"{u}@{domain} {domain}/{u}/\n" for u in self.users))
        self._run("postmap", "-c", self.conf, f"hash:{self.conf}/vmailbox")
        self._run("postfix", "-c", self.conf, "post-install", "create-missing", check=False)
        self._run("postfix", "-c", self.conf, "start")
        self.started = True
        wait_listening(self.port, timeout=20)

    def _run(self, *args, check=True):
        r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(map(str, args))} failed ({r.returncode}):\n"
                                 f"{r.stdout}{r.stderr}\n{self.log()}")
        return r

    def log(self):
        try:
            return self.maillog.read_text(errors="replace")
        except OSError:
            return ""

    def maildir(self, user):
        return self.mail / self.domain / user

    def messages(self, user):
        """Delivered messages of user (bytes, LF line ends as Postfix stores them), oldest first."""
        out = []
        for sub in ("new", "cur"):
            d = self.maildir(user) / sub
            if d.is_dir():
                out += sorted(d.iterdir(), key=lambda p: p.name)
        return [p.read_bytes() for p in out]

    def queue_empty(self):
        r = self._run("postqueue", "-c", self.conf, "-j", check=False)
        return r.returncode == 0 and r.stdout.strip() == ""

    def wait_messages(self, user, n, timeout=20.0):
        """Wait until user has n messages and the queue is empty; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.messages(user)
            if len(msgs) >= n and self.queue_empty():
                return msgs
            if time.monotonic() > deadline:
                raise AssertionError(f"{user}: {len(msgs)} messages, want {n}, after {timeout}s;"
                                     f" maillog:\n{self.log()}")
            time.sleep(0.05)  # the maildir has no event to wait on: poll with a deadline

    def wait_idle(self, timeout=20.0):
        deadline = time.monotonic() + timeout
        while not self.queue_empty():
            if time.monotonic() > deadline:
                raise AssertionError(f"Postfix queue not empty after {timeout}s:\n{self.log()}")
            time.sleep(0.05)

    def stop(self):
        if self.started:
            self._run("postfix", "-c", self.conf, "stop", check=False)
            self.started = False
            # postfix stop returns once master got the signal; wait for its pid file to go
            pid = self.data.parent / "queue" / "pid" / "master.pid"
            deadline = time.monotonic() + 10
            while pid.exists() and time.monotonic() < deadline:
                try:
                    os.kill(int(pid.read_text().split()[0]), 0)
                except (OSError, ValueError):
                    break
                time.sleep(0.05)
        shutil.rmtree(self.root, ignore_errors=True)


def strip_added_headers(raw):
    """A delivered message without what Postfix and backstop add on top: Return-Path,
    X-Original-To, Delivered-To and every Received: header (with continuation lines) at the start."""
    lines = raw.split(b"\n")
    i = 0
    while i < len(lines):
        l = lines[i].lower()
        if l.startswith((b"return-path:", b"x-original-to:", b"delivered-to:", b"received:")):
            i += 1
            while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
                i += 1
            continue
        break
    return b"\n".join(lines[i:])


def received_headers(raw):
    out, cur = [], None
    for line in raw.split(b"\n"):
        if not line:
            break
        if line[:1] in (b" ", b"\t") and cur is not None:
            out[-1] += b"\n" + line
            continue
        cur = line if line.lower().startswith(b"received:") else None
        if cur is not None:
            out.append(line)
    return out


def postfix_available():
    return os.geteuid() == 0 and shutil.which("postfix") is not None


@pytest.fixture
def postfix(tls_files):
    """A started private Postfix (users alice, bob, victim @example.test), TLS offered."""
    if not postfix_available():
        pytest.fail("Postfix tests need root and the postfix package (.ci/run installs it)")
    pf = Postfix(tls_files=tls_files)
    yield pf
    pf.stop()
