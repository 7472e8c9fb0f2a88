"""The command line: --version, --help, COMMAND --help, check-config (exit status and FILE:LINE)."""
import re

from callout_fixtures import FakeValidator
from conftest import run_cli, render_config, default_gateway


def test_version():
    r = run_cli("--version")
    assert r.returncode == 0, r.stderr
    assert re.search(r"backstop\D*\d+\.\d+\.\d+", r.stdout + r.stderr)


def test_help_lists_commands():
    r = run_cli("--help")
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    for cmd in ("run", "check-config"):
        assert cmd in out, out


def test_command_help():
    for cmd in ("run", "check-config"):
        r = run_cli(cmd, "--help")
        assert r.returncode == 0, (cmd, r.stderr)
        assert "-c" in r.stdout + r.stderr


def test_unknown_command_fails():
    r = run_cli("frobnicate")
    assert r.returncode != 0
    assert r.stderr.strip(), "an unknown command must say why on stderr"


def test_check_config_valid(tmp_path):
    conf = tmp_path / "ok.conf"
    conf.write_text(render_config(default_gateway(), {"example.test": {"deliver": "127.0.0.1:2525"}}))
    r = run_cli("check-config", "-c", conf)
    assert r.returncode == 0, r.stdout + r.stderr


def test_check_config_reports_every_error_with_file_and_line(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text(
        "[gateway]\n"                       # 1
        "listen = 127.0.0.1:0\n"            # 2
        "max_message_size = lots\n"         # 3
        "no_such_option = 1\n"              # 4
        "\n"                                # 5
        "[domain example.test]\n"           # 6
        "deliver = 127.0.0.1:2525\n")       # 7
    r = run_cli("check-config", "-c", conf)
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout + r.stderr
    assert f"{conf}:3:" in out, out
    assert f"{conf}:4:" in out, out


def test_check_config_missing_file(tmp_path):
    r = run_cli("check-config", "-c", tmp_path / "absent.conf")
    assert r.returncode == 1
    assert "absent.conf" in r.stdout + r.stderr


def test_run_refuses_broken_config(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("[gateway]\nlisten = 127.0.0.1:0\nworkers = many\n")
    r = run_cli("run", "-c", conf)
    assert r.returncode != 0
    assert f"{conf}:3:" in r.stderr, r.stderr


# ---- issue 9 item 8: `backstop verify` leaves the cache alone unless --store; purge and sub-addresses ----

def _callout_conf(tmp_path, validator, cache, **dom):
    d = {"deliver": "127.0.0.1:2525", "verify": f"callout:{validator.addr}", "recipient_delimiter": "+"}
    d.update(dom)
    conf = tmp_path / "callout.conf"
    conf.write_text(render_config({**default_gateway(), "cache": f"lmdb:{cache}", "callout_timeout": "10s"},
                                  {"example.test": d}))
    return conf


def _show(conf, addr):
    r = run_cli("cache", "-c", conf, "show", addr)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip()


def test_verify_writes_the_cache_only_with_store(tmp_path):
    fv = FakeValidator(known=["alice@example.test"])
    try:
        conf = _callout_conf(tmp_path, fv, tmp_path / "verdicts")
        r = run_cli("verify", "-c", conf, "nope@example.test", "alice@example.test", timeout=30)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "nope@example.test: invalid" in r.stdout and "alice@example.test: valid" in r.stdout
        assert _show(conf, "nope@example.test") == "nope@example.test: not cached"
        assert _show(conf, "alice@example.test") == "alice@example.test: not cached"
        r = run_cli("verify", "-c", conf, "--store", "nope@example.test", timeout=30)
        assert r.returncode == 1, r.stdout + r.stderr
        shown = _show(conf, "nope@example.test")
        assert shown.startswith(f"nope@example.test: invalid source=callout:{fv.addr} "), shown
        # the default negative_ttl is 5 minutes (a new directory entry is accepted within minutes)
        ttl = int(re.search(r"ttl_left=(\d+)s", shown).group(1))
        assert 290 <= ttl <= 300, shown
        r = run_cli("verify", "-c", conf, "nope@example.test", timeout=30)  # read: answered from the cache
        assert "cached=yes" in r.stdout, r.stdout
        assert fv.rcpts["nope@example.test"] == 2
    finally:
        fv.close()


def test_cache_purge_removes_sub_addresses(backstop_factory, tmp_path):
    """The daemon caches the callout's 550 for bob@, bob+x@, bob+y@ and bobby@ (recipient_delimiter
    = +); `backstop cache purge bob@example.test` removes the first three, not bobby@."""
    fv = FakeValidator(known=[])
    try:
        cache = tmp_path / "verdicts"
        b = backstop_factory(gateway={"cache": f"lmdb:{cache}", "callout_timeout": "10s"},
                             domains={"example.test": {"deliver": "127.0.0.1:2525", "recipient_delimiter": "+",
                                                       "verify": f"callout:{fv.addr}"}})
        addrs = ["bob@example.test", "bob+x@example.test", "Bob+Y@example.test", "bobby@example.test"]
        with b.connect(timeout=15) as c:
            c.ehlo()
            assert c.cmd("MAIL FROM:<s@client.test>").code == 250
            assert [c.cmd(f"RCPT TO:<{a}>").code for a in addrs] == [550] * 4
        b.stop()  # closing the cache stores what is queued
        conf = b.conf
        for a in ["bob@example.test", "bob+x@example.test", "bob+y@example.test", "bobby@example.test"]:
            assert " invalid source=callout:" in _show(conf, a), a
        r = run_cli("cache", "-c", conf, "purge", "Bob@Example.Test")
        assert r.returncode == 0, r.stdout + r.stderr
        assert re.search(r"\b3 entries removed", r.stdout), r.stdout
        for a in ["bob@example.test", "bob+x@example.test", "bob+y@example.test"]:
            assert _show(conf, a) == f"{a}: not cached"
        assert " invalid source=callout:" in _show(conf, "bobby@example.test")
    finally:
        fv.close()


# ---- issue 9 item 12: ""@domain in a map is an error with FILE:LINE, never a catch-all ----

def test_check_config_empty_local_part_in_map(tmp_path):
    path = tmp_path / "relay_recipients"
    path.write_text('alice@example.test OK\n""@example.test OK\n')
    conf = tmp_path / "map.conf"
    conf.write_text(render_config(default_gateway(), {"example.test": {"deliver": "127.0.0.1:2525",
                                                                      "verify": f"map:{path}"}}))
    r = run_cli("check-config", "-c", conf)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{path}:2: empty local part" in r.stdout + r.stderr, r.stdout + r.stderr
