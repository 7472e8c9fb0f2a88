"""Redis for the integration tests: redis-server (and redis-sentinel) from Debian, started on
127.0.0.1 random free ports with their own directories under the test's tmp dir, never the
system's instance; redis-cli for looking inside. Waiting polls the port or a command's answer
with a deadline (there is no event to wait on)."""
import shutil
import subprocess
import time

import pytest

from peers import free_port, made_by, wait_listening

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_SENTINEL = shutil.which("redis-sentinel") or "/usr/bin/redis-sentinel"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


class RedisServer:
    def __init__(self, root, name="redis", port=None, extra=(), replicaof=None, tls=None):
        """tls: (cert, key): TLS only, on self.port (the plain port is off)."""
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.extra, self.replicaof, self.tls = list(extra), replicaof, tls
        self.proc = None
        self.start()

    def start(self):
        ports = ["--port", str(self.port)]
        if self.tls:
            ports = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.tls[0]),
                     "--tls-key-file", str(self.tls[1]), "--tls-ca-cert-file", str(self.tls[0]),
                     "--tls-auth-clients", "no"]
        args = [REDIS_SERVER, *ports, "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", str(self.dir / "log"),
                "--protected-mode", "no", *self.extra]
        if self.replicaof:
            args += ["--replicaof", "127.0.0.1", str(self.replicaof)]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        if self.port:
            wait_listening(self.port, proc=self.proc)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def cli(self, *args):
        tls = ["--tls", "--cacert", str(self.tls[0])] if self.tls else []
        auth = ["--no-auth-warning", "-a", self.extra[self.extra.index("--requirepass") + 1]] \
            if "--requirepass" in self.extra else []
        r = subprocess.run([REDIS_CLI, "-h", "localhost" if self.tls else "127.0.0.1", "-p", str(self.port),
                            "--raw", *tls, *auth, *map(str, args)],
                           capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
        return r.stdout.rstrip("\n")

    def wait_cli(self, pred, *args, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            out = self.cli(*args)
            if pred(out):
                return out
            if time.monotonic() > deadline:
                raise AssertionError(f"redis-cli {' '.join(map(str, args))}: last answer {out!r}")
            time.sleep(0.05)  # polling Redis with a deadline


class Sentinel:
    def __init__(self, root, name, master_port, quorum=2):
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        conf = self.dir / "sentinel.conf"
        conf.write_text(f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\nprotected-mode no\n"
                        f"logfile {self.dir / 'log'}\n"
                        f"sentinel monitor mymaster 127.0.0.1 {master_port} {quorum}\n"
                        "sentinel down-after-milliseconds mymaster 600\n"
                        "sentinel failover-timeout mymaster 3000\n"
                        "sentinel parallel-syncs mymaster 1\n")
        self.proc = subprocess.Popen([REDIS_SENTINEL, str(conf)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(self.port, proc=self.proc)

    def master_port(self):
        r = subprocess.run([REDIS_CLI, "-h", "127.0.0.1", "-p", str(self.port), "--raw", "SENTINEL",
                            "get-master-addr-by-name", "mymaster"], capture_output=True, text=True, timeout=10)
        lines = r.stdout.split()
        return int(lines[1]) if len(lines) == 2 else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def redis(tmp_path):
    """A started redis-server on a free loopback port."""
    with made_by(lambda: RedisServer(tmp_path), stop=lambda r: r.stop()) as make:
        yield make()


@pytest.fixture
def redis_factory(tmp_path):
    with made_by(lambda **kw: RedisServer(tmp_path, **kw), stop=lambda r: r.stop()) as make:
        yield make


@pytest.fixture
def sentinel_factory(tmp_path):
    with made_by(lambda name, master_port: Sentinel(tmp_path, name, master_port), stop=lambda s: s.stop()) as make:
        yield make
