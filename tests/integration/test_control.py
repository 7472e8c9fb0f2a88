"""The control socket (issue 14): `backstop status`, `backstop reload` and `backstop cache` against
the running daemon; who may use it; `backstop config` and `-n`."""
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from callout_fixtures import FakeValidator
from conftest import BACKSTOP_BIN, run_cli, render_config, default_gateway, sanitizer_env


def rcpt_codes(b, addrs):
    with b.connect(timeout=15) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<s@client.test>").code == 250
        return [c.cmd(f"RCPT TO:<{a}>").code for a in addrs]


def status(b):
    r = run_cli("status", "-c", b.conf)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def figure(text, key):
    """The value of an indented "key=value" line, or of a "key: value" line."""
    m = re.search(rf"^\s*{re.escape(key)}[=:] ?(.*)$", text, re.M)
    assert m, (key, text)
    return m.group(1)


@pytest.fixture
def control(tmp_path):
    return str(tmp_path / "control")


def test_status_figures_follow_the_traffic(backstop_factory, backend, tmp_path, control):
    users = tmp_path / "users"
    users.write_text("alice@example.test OK\nbob@example.test OK\n")
    b = backstop_factory(gateway={"control_socket": control},
                         domains={"example.test": {"deliver": backend.addr, "verify": f"map:{users}"}})
    b.wait_log(r"ready control=unix:" + re.escape(control))
    assert oct(os.stat(control).st_mode & 0o777) == "0o660"
    before = status(b)
    assert figure(before, "version") and figure(before, "workers") == "2"
    assert figure(before, "generation").startswith("1 ")
    assert figure(before, "last reload") == "none"
    assert re.search(rf"^  backend={re.escape(backend.addr)} domain=example.test state=up$", before, re.M), before
    assert f"source=map:{users}" in before and figure(before, "map_entries") == "2"
    sessions = 3
    for i in range(sessions):
        assert rcpt_codes(b, ["alice@example.test", f"nobody{i}@example.test"]) == [250, 550]
    after = status(b)
    assert figure(after, "sessions").startswith("0 open, 3 accepted"), after
    assert figure(after, "map_lookups") == str(2 * sessions)
    assert figure(after, "map_found") == str(sessions)
    assert figure(after, "engine_verify_rcpt_reject") == str(sessions)    # nobody@: refused by verify
    assert figure(after, "engine_decision_rcpt_reject") == str(sessions)
    assert figure(after, "engine_decision_rcpt_neutral") == str(sessions)  # alice@: the backend decides
    assert figure(after, "verify_lookups") == str(2 * sessions) and "  cache=memory:" in after


def test_purge_through_the_socket_changes_the_next_answer(backstop_factory, backend, control):
    fv = FakeValidator(known=[])
    try:
        b = backstop_factory(gateway={"control_socket": control, "callout_timeout": "10s"},
                             domains={"example.test": {"deliver": backend.addr, "verify": f"callout:{fv.addr}"}})
        assert rcpt_codes(b, ["carol@example.test"]) == [550]
        fv.known.add("carol@example.test")  # the directory learns carol; the cache still says no
        assert rcpt_codes(b, ["carol@example.test"]) == [550]
        assert fv.rcpts["carol@example.test"] == 1
        # the cache is the daemon's memory: only the daemon can show or purge it
        shown = run_cli("cache", "-c", b.conf, "show", "Carol@Example.Test")
        assert shown.returncode == 0 and shown.stdout.startswith("carol@example.test: invalid source=callout:"), \
            shown.stdout + shown.stderr
        stats = run_cli("cache", "-c", b.conf, "stats")
        assert stats.returncode == 0 and "cache=memory:" in stats.stdout and "entries=1" in stats.stdout, stats.stdout
        assert "verify_cache_hits=1" in stats.stdout, stats.stdout
        r = run_cli("cache", "-c", b.conf, "purge", "carol@example.test")
        assert r.returncode == 0 and "1 entry removed" in r.stdout, r.stdout + r.stderr
        assert r.stderr == "", r.stderr  # the daemon answered: no fallback note
        assert rcpt_codes(b, ["carol@example.test"]) == [250]  # at once: asked again
        assert fv.rcpts["carol@example.test"] == 2
        r = run_cli("cache", "-c", b.conf, "flush")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "not cached" in run_cli("cache", "-c", b.conf, "show", "carol@example.test").stdout
        # a usage error is the daemon's answer too
        r = run_cli("cache", "-c", b.conf, "show", "@example.test")
        assert r.returncode == 3 and "needs an address" in r.stderr, r.stdout + r.stderr
    finally:
        fv.close()


def test_cache_without_the_daemon(tmp_path, control):
    """No daemon: a memory: cache is nothing to act on (exit 4); an LMDB store is edited directly,
    and the command says so."""
    conf = tmp_path / "b.conf"
    conf.write_text(render_config({**default_gateway(), "control_socket": control},
                                  {"example.test": {"deliver": "127.0.0.1:2525", "verify": "callout:127.0.0.1:1"}}))
    r = run_cli("cache", "-c", conf, "stats")
    assert r.returncode == 4 and "cannot be reached" in r.stderr and "memory" in r.stderr, r.stderr
    conf.write_text(render_config({**default_gateway(), "control_socket": control, "cache": f"lmdb:{tmp_path}/v"},
                                  {"example.test": {"deliver": "127.0.0.1:2525", "verify": "callout:127.0.0.1:1"}}))
    r = run_cli("cache", "-c", conf, "purge", "x@example.test")
    assert r.returncode == 0 and "0 entries removed" in r.stdout, r.stdout + r.stderr
    assert "acting on the store lmdb:" in r.stderr, r.stderr
    r = run_cli("status", "-c", conf)
    assert r.returncode == 4 and "cannot reach the daemon" in r.stderr, r.stderr
    r = run_cli("reload", "-s", str(tmp_path / "nothing"))
    assert r.returncode == 4, r.stderr


def test_reload_reports_errors_and_keeps_the_old_config(backstop_factory, backend, control):
    b = backstop_factory(gateway={"control_socket": control},
                         domains={"example.test": {"deliver": backend.addr}, "other.test": {"deliver": backend.addr}})
    good = b.conf.read_text()
    broken = good + "\n[gateway]\nmax_recipients = lots\n"
    bad_line = broken.count("\n")
    b.conf.write_text(broken)
    r = run_cli("reload", "-c", b.conf)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{b.conf}:{bad_line}: " in r.stderr and "max_recipients" in r.stderr, r.stderr
    assert "reload refused" in r.stderr and "generation 1" in r.stderr, r.stderr
    assert rcpt_codes(b, ["user@other.test"]) == [250]  # the old config still serves
    st = status(b)
    assert figure(st, "generation").startswith("1 ") and figure(st, "last reload").startswith("refused at "), st
    assert f"{b.conf}:" in figure(st, "last reload")  # the first error of the file
    # a good file is applied, and says so
    b.conf.write_text(good.replace("[domain other.test]", "[domain third.test]"))
    r = run_cli("reload", "-c", b.conf)
    assert r.returncode == 0 and "reload applied" in r.stdout and "generation 2" in r.stdout, r.stdout + r.stderr
    assert rcpt_codes(b, ["user@third.test"]) == [250]
    assert rcpt_codes(b, ["user@other.test"]) == [554]
    # SIGHUP counts as a generation too
    mark = b.mark()
    b.send_signal(signal.SIGHUP)
    b.wait_log("configuration reloaded", start=mark)
    assert figure(status(b), "generation").startswith("3 ")


def test_a_stale_socket_is_replaced_and_a_live_one_left_alone(backstop_factory, backend, control):
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(control)
    stale.close()  # the file stays, nobody listens: a crashed daemon's
    b = backstop_factory(gateway={"control_socket": control})
    b.wait_log("ready control=unix:")
    assert "generation: 1" in status(b)
    other = backstop_factory(gateway={"control_socket": control}, name="other.conf")
    other.wait_log(r"control_socket .*another server is listening on it")
    assert figure(status(b), "pid") == str(b.pid)  # still the first daemon's socket
    other.check_clean_exit()
    assert os.path.exists(control)  # the second did not remove the first's socket
    b.check_clean_exit()
    assert not os.path.exists(control)


def _run_as(user, *args):
    pw = pwd.getpwnam(user)

    def drop():
        os.setgroups([])
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    return subprocess.run([BACKSTOP_BIN, *map(str, args)], capture_output=True, text=True, timeout=10,
                          env=sanitizer_env(), stdin=subprocess.DEVNULL, preexec_fn=drop)


@pytest.fixture
def outsider():
    """A throwaway system user in no group of ours (root only)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create a throwaway user")
    name = "bsctl" + uuid.uuid4().hex[:8]
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False)


@pytest.fixture
def open_dir():
    """A directory everyone may enter (pytest's tmp_path is under a 0700 one)."""
    d = tempfile.mkdtemp(prefix="bsctl", dir="/tmp")
    os.chmod(d, 0o755)
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


def test_a_non_member_is_refused(backstop_factory, backend, open_dir, outsider):
    tmp_path = open_dir  # the directory is not what keeps the outsider out
    # the file's mode keeps the outsider out...
    control = str(tmp_path / "control")
    b = backstop_factory(gateway={"control_socket": control})
    b.wait_log("ready control=unix:")
    r = _run_as(outsider, "status", "-s", control)
    assert r.returncode == 4 and "Permission denied" in r.stderr, r.stdout + r.stderr
    # ...and so do its credentials when the mode lets everyone connect
    open_sock = str(tmp_path / "open")
    o = backstop_factory(gateway={"control_socket": open_sock, "control_socket_mode": "0666"}, name="open.conf")
    o.wait_log("ready control=unix:")
    r = _run_as(outsider, "status", "-s", open_sock)
    assert r.returncode == 4 and "access denied" in r.stderr and "version" not in r.stdout, r.stdout + r.stderr
    r = _run_as(outsider, "cache", "-s", open_sock, "-c", o.conf, "flush")
    assert r.returncode == 4 and "access denied" in r.stderr, r.stdout + r.stderr
    o.wait_log(rf"control: refused pid \d+ uid {pwd.getpwnam(outsider).pw_uid}")
    # root may, and a member of the socket's group may
    assert "version" in status(o)
    grp_name = f"{outsider}g"
    subprocess.run(["groupadd", "--system", grp_name], check=True)
    try:
        subprocess.run(["usermod", "-a", "-G", grp_name, outsider], check=True)
        g = backstop_factory(gateway={"control_socket": str(tmp_path / "grp"), "control_socket_group": grp_name},
                             name="grp.conf")
        g.wait_log("ready control=unix:")
        gid = grp.getgrnam(grp_name).gr_gid
        pw = pwd.getpwnam(outsider)

        def member():
            os.setgroups([gid])
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
        r = subprocess.run([BACKSTOP_BIN, "status", "-s", str(tmp_path / "grp")], capture_output=True, text=True,
                           timeout=10, env=sanitizer_env(), stdin=subprocess.DEVNULL, preexec_fn=member)
        assert r.returncode == 0 and "version:" in r.stdout, r.stdout + r.stderr
        g.check_clean_exit()
    finally:
        subprocess.run(["gpasswd", "-d", outsider, grp_name], check=False, capture_output=True)
        subprocess.run(["groupdel", grp_name], check=False)


# ---- backstop config ----

def test_config_prints_every_key_and_n_only_the_changed_ones(tmp_path):
    users = tmp_path / "users"
    users.write_text("a@example.test OK\n")
    conf = tmp_path / "c.conf"
    conf.write_text(render_config({"listen": "127.0.0.1:2500", "hostname": "mx.example.test", "max_recipients": 100,
                                   "positive_ttl": "2h", "policy_listen": "unix:/tmp/x.sock, [::1]:0"},
                                  {"example.test": {"deliver": "[::1]:25, 127.0.0.1:2525", "verify": f"map:{users}",
                                                    "negative_ttl": "10m"},
                                   "b.test": {"deliver": "127.0.0.1:2525", "positive_ttl": "2h"}}))
    full = run_cli("config", "-c", conf)
    assert full.returncode == 0, full.stderr
    out = full.stdout
    keys = re.findall(r"^(?:# )?(\w+)(?: =| is unset)", out, re.M)
    # every [gateway] key of the table, as check-config's list documents them
    doc = subprocess.run(["man", "-P", "cat", "./build/man/backstop.conf.5"], capture_output=True, text=True)
    assert "max_connections = 10000" in out and "command_timeout = 5m" in out and "pregreet = log" in out
    assert "control_socket = /run/backstop/control" in out and "# tls_cert is unset" in out
    assert "listen = 127.0.0.1:2500" in out and "max_recipients = 100" in out
    assert "policy_listen = unix:/tmp/x.sock, [::1]:0" in out
    assert re.search(r"\[domain example\.test\]\ndeliver = \[::1\]:25, 127\.0\.0\.1:2525\n", out), out
    assert len(keys) > 60, keys
    del doc
    # the output is a configuration that loads as the same one
    again = tmp_path / "again.conf"
    again.write_text(out)
    r = run_cli("check-config", "-c", again)
    assert r.returncode == 0, r.stdout
    assert run_cli("config", "-c", again).stdout.split("\n", 1)[1] == out.split("\n", 1)[1]
    # -n: only what differs from the defaults, sections included
    n = run_cli("config", "-n", "-c", conf)
    assert n.returncode == 0, n.stderr
    body = [l for l in n.stdout.splitlines() if l and not l.startswith("#")]
    assert body == [
        "[gateway]", "listen = 127.0.0.1:2500", "hostname = mx.example.test", "positive_ttl = 2h",
        "policy_listen = unix:/tmp/x.sock, [::1]:0",
        "[domain b.test]", "deliver = 127.0.0.1:2525",
        "[domain example.test]", "deliver = [::1]:25, 127.0.0.1:2525", f"verify = map:{users}", "negative_ttl = 10m",
    ], n.stdout
    # a broken file: its errors, exit 1
    conf.write_text("[gateway]\nlisten = nope\n")
    r = run_cli("config", "-c", conf)
    assert r.returncode == 1 and f"{conf}:2:" in r.stderr, r.stderr
