"""slapd_fixture.py - a private OpenLDAP server for backstop's LDAP tests.

Slapd(tmpdir) writes its own slapd.conf (core, cosine, inetorgperson from /etc/ldap/schema and
tests/data/ldap/ad-lite.schema), loads the generated directory with slapadd into an mdb database
under tmpdir, and runs /usr/sbin/slapd in the foreground on 127.0.0.1 and a free port. The server
applies a size limit of 1,000 entries (paged results may return more, page by page, like AD), and
only bound users may read. Never touches the system's slapd.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data", "ldap")
sys.path.insert(0, DATA)
import gen_ldif  # noqa: E402

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SCHEMA_DIR = "/etc/ldap/schema"

CONF = """\
include {schema}/core.schema
include {schema}/cosine.schema
include {schema}/inetorgperson.schema
include {adlite}
pidfile {tmp}/slapd.pid
argsfile {tmp}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
sizelimit size.soft=1000 size.hard=1000 size.pr=1000 size.prtotal=unlimited
timelimit 30
loglevel none

database mdb
maxsize 268435456
suffix "{suffix}"
rootdn "cn=admin,{suffix}"
rootpw admin-secret
directory {tmp}/db
index objectClass eq
index mail,proxyAddresses,mailAlternateAddress eq,sub
access to attrs=userPassword by anonymous auth by * none
access to * by users read by * none
"""


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Slapd:
    def __init__(self, tmpdir, directory=None):
        self.tmp = str(tmpdir)
        self.dir = directory if directory is not None else gen_ldif.generate()
        self.port = free_port()
        self.uri = "ldap://127.0.0.1:%d/" % self.port
        self.conf = os.path.join(self.tmp, "slapd.conf")
        self.proc = None
        os.makedirs(os.path.join(self.tmp, "db"), exist_ok=True)
        with open(self.conf, "w") as f:
            f.write(CONF.format(schema=SCHEMA_DIR, adlite=os.path.join(DATA, "ad-lite.schema"),
                                tmp=self.tmp, suffix=gen_ldif.SUFFIX))
        self._load()

    def _load(self):
        ldif = os.path.join(self.tmp, "data.ldif")
        with open(ldif, "w") as f:
            f.write(self.dir.ldif())
        subprocess.run([SLAPADD, "-q", "-f", self.conf, "-l", ldif], check=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)

    def start(self, timeout=15.0):
        """Start slapd (again, on the same port) and wait until it answers a search."""
        assert self.proc is None
        log = open(os.path.join(self.tmp, "slapd.log"), "ab")
        # -d 0: stay in the foreground (so we own the process) without debug output
        self.proc = subprocess.Popen([SLAPD, "-d", "0", "-h", self.uri, "-f", self.conf],
                                     stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("slapd exited with %d, see %s/slapd.log" %
                                   (self.proc.returncode, self.tmp))
            if self.search("(objectClass=organization)", attrs=["dn"], check=False).returncode == 0:
                return
            time.sleep(0.05)  # bounded polling for readiness, not synchronisation by sleeping
        self.stop()
        raise RuntimeError("slapd did not answer within %.0f s" % timeout)

    def search(self, flt, base=gen_ldif.SUFFIX, attrs=(), check=True, paged=False):
        cmd = ["ldapsearch", "-LLL", "-x", "-o", "nettimeout=2", "-H", self.uri,
               "-D", gen_ldif.SERVICE_DN, "-w", gen_ldif.SERVICE_PASSWORD, "-b", base]
        if paged:
            cmd += ["-E", "pr=500/noprompt"]
        return subprocess.run(cmd + [flt] + list(attrs), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, check=check, timeout=30)

    def ldapmodify(self, ldif):
        subprocess.run(["ldapmodify", "-x", "-H", self.uri, "-D", "cn=admin," + gen_ldif.SUFFIX,
                        "-w", "admin-secret"], input=ldif, text=True, check=True,
                       stdout=subprocess.PIPE, timeout=30)

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def pause(self):
        """Freeze slapd (SIGSTOP): connections stay open but nothing answers.

        kill() only queues the stop: each of slapd's threads stops when it next gets a CPU, and
        until the last one has, slapd can still read and answer a request (on a busy machine it
        did, for whole batches). Return only once the kernel reports the whole process stopped
        (waitid WSTOPPED: every thread has taken part in the group stop). WNOWAIT consumes
        nothing, so an exit instead stays for Popen to reap. SIGSTOP can be neither caught nor
        ignored, so the stop comes as soon as slapd's threads are scheduled."""
        self.proc.send_signal(signal.SIGSTOP)
        r = os.waitid(os.P_PID, self.proc.pid, os.WSTOPPED | os.WEXITED | os.WNOWAIT)
        if r.si_code != os.CLD_STOPPED:
            raise RuntimeError("slapd exited instead of stopping, see %s/slapd.log" % self.tmp)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def config_section(self, name, base, preset, include_disabled=False, connections=2,
                       timeout="2s", uris=None, extra=""):
        """An [ldap NAME] section of backstop.conf pointing at this server."""
        pwfile = os.path.join(self.tmp, "bindpw")
        with open(pwfile, "w") as f:
            f.write(gen_ldif.SERVICE_PASSWORD + "\n")
        os.chmod(pwfile, 0o600)
        return ("[ldap %s]\nuri = %s\nbind_dn = %s\nbind_password_file = %s\nbase = %s\n"
                "preset = %s\ninclude_disabled = %s\nconnections = %d\ntimeout = %s\n%s\n" %
                (name, " ".join(uris or [self.uri]), gen_ldif.SERVICE_DN, pwfile, base, preset,
                 "yes" if include_disabled else "no", connections, timeout, extra))
