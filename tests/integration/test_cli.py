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


# --- check-config against the machine (issue 9 item 15) -----------------------------------------
# Names under .invalid never resolve (RFC 6761); literal addresses and "localhost" always do.

def check_config(tmp_path, text, name="c.conf"):
    conf = tmp_path / name
    conf.write_text(text)
    r = run_cli("check-config", "-c", conf, timeout=60)
    return conf, r.returncode, r.stdout + r.stderr


def ldap_conf(tmp_path, uri="ldap://127.0.0.1:1", extra="", pwfile=None):
    if pwfile is None:
        pwfile = tmp_path / "ldap.secret"
        pwfile.write_text("secret\n")
        pwfile.chmod(0o640)
    return ("[gateway]\nlisten = 127.0.0.1:0\ncache = memory:\n"        # 1-3
            "[domain example.test]\ndeliver = 127.0.0.1:2525\n"          # 4-5
            "verify = ldap:corp\n"                                       # 6
            f"[ldap corp]\nuri = {uri}\nbase = dc=example,dc=test\n"     # 7-9
            f"bind_dn = cn=backstop,dc=example,dc=test\n"                # 10
            f"bind_password_file = {pwfile}\n" + extra)                  # 11


def test_check_config_warns_when_a_deliver_host_does_not_resolve(tmp_path):
    conf, rc, out = check_config(tmp_path, render_config(default_gateway(), {
        "example.test": {"deliver": "nohost.invalid:25, 127.0.0.1:2525, localhost:2525",
                         "verify": "callout:probe.invalid:25"}}))
    assert rc == 0, out                                   # a warning, not an error
    warnings = [l for l in out.splitlines() if "warning:" in l]
    assert len(warnings) == 2, out
    assert any("deliver host nohost.invalid does not resolve" in l for l in warnings), out
    assert any("callout host probe.invalid does not resolve" in l for l in warnings), out
    assert all(l.startswith(f"{conf}:") for l in warnings), out
    assert "OK (1 domains, 2 warnings)" in out, out


def test_check_config_resolvable_hosts_give_no_warning(tmp_path):
    _, rc, out = check_config(tmp_path, render_config(default_gateway(), {
        "example.test": {"deliver": "127.0.0.1:2525, localhost:2525, [::1]:2525"}}))
    assert rc == 0 and "warning" not in out, out


def test_cache_error_is_not_doubled(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("")
    spec = f"lmdb:{blocker}/verdicts"
    text = render_config({**default_gateway(), "cache": spec},
                         {"example.test": {"deliver": "127.0.0.1:2525", "verify": "callout:127.0.0.1:1"}})
    conf = tmp_path / "c.conf"
    conf.write_text(text)
    r = run_cli("run", "-c", conf)
    assert r.returncode == 1, r.stderr
    assert r.stderr.count(f"cache {spec}") == 1, r.stderr   # not "cache X: cache X: ..."
    conf, rc, out = check_config(tmp_path, text)
    assert rc == 1, out                                   # check-config finds what run would refuse
    line = text.splitlines().index(f"cache = {spec}") + 1
    assert f"{conf}:{line}: cache = {spec}:" in out, out


def test_check_config_checks_the_cache_directory(tmp_path):
    ok = tmp_path / "state" / "verdicts"                  # missing but creatable: fine, not created
    _, rc, out = check_config(tmp_path, render_config(
        {**default_gateway(), "cache": f"lmdb:{ok}"},
        {"example.test": {"deliver": "127.0.0.1:2525", "verify": "callout:127.0.0.1:1"}}))
    assert rc == 0 and "warning" not in out, out
    assert not ok.parent.exists(), "check-config must not create the cache directory"


def test_check_config_checks_the_user(tmp_path):
    conf, rc, out = check_config(tmp_path, render_config(
        {**default_gateway(), "user": "backstop-no-such-user"}, {"example.test": {"deliver": "127.0.0.1:2525"}}))
    assert rc == 1, out
    assert "user = backstop-no-such-user: no such user" in out, out
    _, rc, out = check_config(tmp_path, render_config(
        {**default_gateway(), "user": "root"}, {"example.test": {"deliver": "127.0.0.1:2525"}}))
    assert rc == 0, out


def test_check_config_missing_password_file_is_one_error(tmp_path):
    conf, rc, out = check_config(tmp_path, ldap_conf(tmp_path, uri="ldaps://127.0.0.1:1",
                                                      pwfile=tmp_path / "absent.secret"))
    assert rc == 1, out
    errors = [l for l in out.splitlines() if l.startswith(f"{conf}:")]
    assert errors == [f"{conf}:11: bind_password_file = {tmp_path / 'absent.secret'}: file not found"], out


def test_check_config_warns_world_readable_secret(tmp_path):
    pw = tmp_path / "ldap.secret"
    pw.write_text("secret\n")
    pw.chmod(0o644)
    _, rc, out = check_config(tmp_path, ldap_conf(tmp_path, uri="ldaps://127.0.0.1:1", pwfile=pw))
    assert rc == 0, out
    assert f"warning: bind_password_file {pw} is readable by everyone" in out, out
    pw.chmod(0o640)
    _, rc, out = check_config(tmp_path, ldap_conf(tmp_path, uri="ldaps://127.0.0.1:1", pwfile=pw))
    assert rc == 0 and "warning" not in out, out


def test_check_config_warns_simple_bind_in_clear(tmp_path):
    _, rc, out = check_config(tmp_path, ldap_conf(tmp_path, uri="ldap://127.0.0.1:1"))
    assert rc == 0, out
    assert "warning: [ldap corp] uri ldap://127.0.0.1:1: a simple bind without starttls" in out, out
    for uri, extra in (("ldap://127.0.0.1:1", "starttls = yes\n"), ("ldaps://127.0.0.1:1", ""),
                       ("ldapi://%2Frun%2Fslapd.sock", "")):
        _, rc, out = check_config(tmp_path, ldap_conf(tmp_path, uri=uri, extra=extra))
        assert rc == 0 and "warning" not in out, (uri, out)


def test_command_help_lists_every_option():
    """COMMAND --help explains each option its usage line names, not only -c and -h."""
    for cmd in ("verify", "sync", "probe", "cache", "status", "reload", "config"):
        r = run_cli(cmd, "--help")
        assert r.returncode == 0, (cmd, r.stderr)
        lines = r.stdout.splitlines()
        usage = lines[0]
        opts = set(re.findall(r"--[a-z-]+", usage))
        assert cmd == "cache" or opts, usage
        described = {o for o in opts for l in lines[1:] if re.match(rf"\s+(-\w, )?{o}\b", l)}
        assert described == opts, (cmd, sorted(opts - described), r.stdout)
    r = run_cli("cache", "--help")
    for op in ("stats", "show", "purge", "flush"):
        assert re.search(rf"^\s+{op}\b", r.stdout, re.M), r.stdout
    assert "the daemon's" in r.stdout, r.stdout


def test_check_config_warns_when_the_stage_deadline_is_not_above_verify_timeout(tmp_path):
    verifying = {"example.test": {"deliver": "127.0.0.1:2525", "verify": "callout:127.0.0.1:1",
                                  "on_unavailable": "accept"}}
    text = render_config({**default_gateway(), "verify_timeout": "30s"}, verifying)
    conf, rc, out = check_config(tmp_path, text)
    assert rc == 0, out                                   # a warning, not an error
    line = text.splitlines().index("verify_timeout = 30s") + 1  # decision_timeout kept its default
    assert (f"{conf}:{line}: warning: decision_timeout = 25s is not above verify_timeout = 30s: a recipient "
            "whose verification runs out of time gets the stage deadline's 451 4.4.3 first, and "
            "on_unavailable = accept never applies") in out, out
    assert "OK (1 domains, 1 warnings)" in out, out
    text = render_config({**default_gateway(), "verify_timeout": "10s", "decision_timeout": "10s"}, verifying)
    conf, rc, out = check_config(tmp_path, text)
    line = text.splitlines().index("decision_timeout = 10s") + 1
    assert rc == 0 and f"{conf}:{line}: warning: decision_timeout = 10s is not above verify_timeout = 10s" in out, out
    for gateway in ({"verify_timeout": "10s", "decision_timeout": "11s"}, {}):  # above it, the defaults
        _, rc, out = check_config(tmp_path, render_config({**default_gateway(), **gateway}, verifying))
        assert rc == 0 and "warning" not in out, (gateway, out)
    # no domain verifies: verify_timeout plays no part
    _, rc, out = check_config(tmp_path, render_config({**default_gateway(), "verify_timeout": "30s"},
                                                      {"example.test": {"deliver": "127.0.0.1:2525"}}))
    assert rc == 0 and "warning" not in out, out
