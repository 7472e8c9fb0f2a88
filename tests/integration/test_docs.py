"""The documentation keeps up with the code: every key of `backstop config` is in the rendered
backstop.conf(5) under its section, the SPF, DNSBL and harvest keys are in the README with their
defaults, a default given in passing in the prose is the real one, every command of `backstop --help` (and each option of its own --help) is in backstop(8)
with its exit status, every metric family of the source and of a running gateway is in backstop(8)'s
METRICS with the labels it is served with, and groff finds nothing to warn about in either page.
"""
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from conftest import BACKSTOP_BIN, run_cli

ROOT = Path(__file__).resolve().parents[2]
MAN8 = ROOT / "man" / "backstop.8"
MAN5 = Path(BACKSTOP_BIN).resolve().parent / "man" / "backstop.conf.5"  # built from the .in template
README = ROOT / "README.md"
GROFF = shutil.which("groff")
# documented in METRICS but not served by the daemon: a node_exporter textfile gauge that
# contrib/prometheus's alert rules and the dashboard use
TEXTFILE_METRICS = {"backstop_blocklist_listed", "backstop_blocklist_lookup_errors",
                    "backstop_blocklist_checked_addresses", "backstop_blocklist_last_check_timestamp_seconds"}


def section(text, name):
    """The text of the mdoc section .Sh NAME up to the next .Sh."""
    i = text.index(f".Sh {name}\n")
    return text[i:text.index("\n.Sh ", i + 1)]


def rendered_conf5():
    assert MAN5.exists(), f"{MAN5} not built (ninja -C build)"
    return MAN5.read_text()


# ---------------------------------------------------------------------------------------------
# backstop.conf(5): keys

def full_config(tmp_path):
    """`backstop config` of a file with one [domain] and one [ldap]: every key of every section."""
    conf = tmp_path / "docs.conf"
    conf.write_text("[domain example.test]\ndeliver = 127.0.0.1:25\nverify = ldap:corp\n\n"
                    "[ldap corp]\nuri = ldap://127.0.0.1\nbase = dc=example,dc=test\n")
    r = run_cli("config", "-c", conf)
    assert r.returncode == 0, r.stderr
    keys = {}  # section -> {key: value or None (unset)}
    sec = None
    for line in r.stdout.splitlines():
        m = re.match(r"^\[(gateway|domain|ldap)\b", line)
        if m:
            sec = m.group(1)
            keys[sec] = {}
            continue
        set_ = re.match(r"^(\w+) = ?(.*)$", line)
        unset = re.match(r"^# (\w+) is unset", line)
        if sec and set_:
            keys[sec][set_.group(1)] = set_.group(2)
        elif sec and unset:
            keys[sec][unset.group(1)] = None
    assert set(keys) == {"gateway", "domain", "ldap"}, keys.keys()
    return keys


def test_conf5_lists_every_key_of_backstop_config_in_its_section(tmp_path):
    keys = full_config(tmp_path)
    assert len(keys["gateway"]) > 80 and len(keys["domain"]) > 15 and len(keys["ldap"]) > 10, keys
    page = section(rendered_conf5(), "KEYS")
    titles = {"gateway": "[gateway]", "domain": "[domain NAME]", "ldap": "[ldap NAME]"}
    for sec, names in keys.items():
        i = page.index(f".Ss Keys of {titles[sec]}\n")
        j = page.find(".Ss ", i + 1)
        block = page[i:j if j > 0 else len(page)]
        documented = set(re.findall(r"^\.It Ic (\w+) ", block, re.M))
        missing = set(names) - documented
        assert not missing, f"[{sec}] keys of `backstop config` not in backstop.conf(5): {sorted(missing)}"
        # each key says its default
        for name in names:
            entry = block[block.index(f".It Ic {name} "):]
            entry = entry[:entry.find("\n.It ", 1) if "\n.It " in entry[1:] else len(entry)]
            assert "\nDefault:\n" in entry, f"[{sec}] {name}: no default in backstop.conf(5)"


def test_docs_name_every_restart_only_key():
    """The keys that a reload does not change (server_restart_keys in src/server.c) are named
    where backstop.conf(5) explains reloads, in backstop(8)'s SIGNALS and in README's Reload."""
    src = (ROOT / "src" / "server.c").read_text()
    body = src[src.index("static bool server_restart_keys"):]
    body = body[:body.index("\n}\n")]
    restart = set(re.findall(r'strbuf_append\(out, len, " (\w+)"\)', body))
    assert {"listen", "workers", "cache", "user"} <= restart, restart
    desc = section(rendered_conf5(), "DESCRIPTION")
    signals = section(MAN8.read_text(), "SIGNALS")
    readme = README.read_text()
    reload_par = readme[readme.index("**Reload.**"):]
    reload_par = reload_par[:reload_par.index("\n\n")]
    for k in restart:
        assert re.search(rf"\.Ic {k}\b", desc), f"{k} not named as restart-only in backstop.conf(5)"
        assert re.search(rf"\.Ic {k}\b", signals), f"{k} not named as restart-only in backstop(8) SIGNALS"
        assert f"`{k}`" in reload_par, f"{k} not named as restart-only in README's Reload paragraph"


# ---------------------------------------------------------------------------------------------
# README: the keys of the SPF, DNSBL and harvest sections with their defaults

README_KEYS = re.compile(r"^(spf\w*|dnsbl_\w+|blcheck_\w+|harvest_\w+|callout_max_rate|authserv_id|dns_servers)$")


def duration_ms(s):
    units = {"ms": 1, "s": 1000, "m": 60000, "h": 3600000, "d": 86400000}
    parts = re.findall(r"(\d+)(ms|s|m|h|d)", s)
    if not parts or "".join(a + b for a, b in parts) != s:
        return None
    return sum(int(a) * units[b] for a, b in parts)


def same_value(word, default):
    if word == default:
        return True
    bools = ({"no", "off", "false"}, {"yes", "on", "true"})
    if any(word in b and default in b for b in bools):
        return True
    a, b = duration_ms(word), duration_ms(default)
    return a is not None and a == b


def test_readme_gives_spf_dnsbl_and_harvest_keys_with_defaults(tmp_path):
    gateway = full_config(tmp_path)["gateway"]
    wanted = {k: v for k, v in gateway.items() if README_KEYS.match(k)}
    assert len(wanted) >= 20, wanted
    lines = README.read_text().splitlines()
    problems = []
    for key, default in sorted(wanted.items()):
        rows = [l for l in lines if re.search(rf"`{key}`|^{key} =", l)]
        if not rows:
            problems.append(f"{key}: not in README")
            continue
        ok = False
        for l in rows:
            if l.startswith("|"):  # a table row: | `key` | default | ...
                cells = [c.strip().strip("`") for c in l.strip("|").split("|")]
                cell = cells[1] if len(cells) > 1 else ""
                words = re.split(r"[`,\s]+", cell)
                # a computed default names what it comes from (authserv_id: the `hostname`)
                ok = bool(cell) if default in (None, "") else \
                    any(same_value(w, default) or gateway.get(w) == default for w in words)
            elif default is not None and default != "":  # an ini line: key = default   # comment
                m = re.match(rf"^{key} = (\S+)", l)
                ok = bool(m) and same_value(m.group(1), default)
            if ok:
                break
        if not ok:
            problems.append(f"{key}: README gives no default (expected {default!r}) in {rows}")
    assert not problems, "\n".join(problems)


def test_defaults_given_in_the_prose_are_the_real_ones(tmp_path):
    """Where the pages or the README give a key's default in passing, `.Ic key` then `(25s)` or
    `key` (25s), it is the default `backstop config` shows."""
    keys = full_config(tmp_path)
    defaults = {**keys["ldap"], **keys["domain"], **keys["gateway"]}  # [gateway]'s win for shared names
    value = re.compile(r"^[0-9][0-9a-zA-Z/.]*$")
    texts = {"backstop.8": MAN8.read_text(), "backstop.conf.5": rendered_conf5(), "README.md": README.read_text()}
    pattern = {"README.md": r"`(\w+)` \(([^)]*)\)", "backstop.8": r"^\.Ic (\w+)(?: [,;.]+)?\n\(([^)\n]*)\)"}
    pattern["backstop.conf.5"] = pattern["backstop.8"]
    wrong, seen = [], 0
    for name, text in texts.items():
        for key, inner in re.findall(pattern[name], text, re.M):
            first = re.split(r"[\s,;:]+", inner.strip())[0]
            if key not in defaults or defaults[key] in (None, "") or not value.match(first):
                continue
            seen += 1
            if not same_value(first, defaults[key]):
                wrong.append(f"{name}: {key} ({inner}) but its default is {defaults[key]}")
    assert seen >= 20, seen
    assert not wrong, "\n".join(wrong)


# ---------------------------------------------------------------------------------------------
# backstop(8): commands, their options and exit status

def commands():
    r = run_cli("--help")
    assert r.returncode == 0
    names = re.findall(r"^  backstop ([a-z-]+)", r.stdout, re.M)
    assert len(names) >= 11, names
    return names


def command_entry(man, name):
    """The .It Cm NAME item of COMMANDS, up to the next command's."""
    sec = section(man, "COMMANDS")
    names = commands()
    starts = {n: sec.find(f"\n.It Cm {n} ") for n in names}
    i = starts[name]
    assert i >= 0, f"{name}: no .It Cm {name} in COMMANDS"
    later = [s for s in starts.values() if s > i]
    return sec[i:min(later) if later else len(sec)]


def test_man8_describes_every_command_with_its_exit_status():
    man = MAN8.read_text()
    synopsis = section(man, "SYNOPSIS")
    status = section(man, "EXIT STATUS")
    for name in commands():
        assert re.search(rf"^\.Nm\n\.Cm {re.escape(name)}$", synopsis, re.M), f"{name}: not in SYNOPSIS"
        command_entry(man, name)
        assert f"\n.It Cm {name}\n" in status, f"{name}: no EXIT STATUS entry"
    # the page names no command that does not exist
    assert set(re.findall(r"^\.It Cm ([a-z-]+)", status, re.M)) == set(commands())


def test_man8_describes_every_option_of_each_command():
    man = MAN8.read_text()
    options = section(man, "OPTIONS")
    for name in commands():
        r = run_cli(name, "--help")
        assert r.returncode == 0, r.stderr
        entry = command_entry(man, name)
        for short, long_ in re.findall(r"^ {2}(?:-(\w), )? *--([a-z-]+)", r.stdout, re.M):
            if long_ == "help":
                continue  # described once, after COMMANDS
            where = options if long_ == "config" else entry
            assert f"Fl -{long_}" in where, f"backstop {name} --{long_}: not in backstop(8)"
            if short:
                assert re.search(rf"Fl {short}\b", where), f"backstop {name} -{short}: not in backstop(8)"
        if name == "cache":  # its operations: stats, show ADDR, purge ADDR|@DOMAIN, flush
            ops = re.findall(r"^ {2}([a-z]+)\b(?: [A-Z@|]+)* {2,}", r.stdout, re.M)
            assert {"stats", "show", "purge", "flush"} <= set(ops), ops
            for op in ops:
                assert f".It Cm {op}" in entry, f"backstop cache {op}: not in backstop(8)"
    assert "Fl -help" in man and "Fl -version" in man


# ---------------------------------------------------------------------------------------------
# backstop(8): metrics

def documented_metrics(man):
    """{name: (type, [labels])} of every metric backstop(8)'s METRICS section lists: an item
    `.It Sy NAME Ns Brq Va a , b`, then `TYPE: meaning`. One metric per item: Brq encloses the
    rest of its line, so a second name on it would render inside the first one's braces."""
    out = {}
    lines = section(man, "METRICS").splitlines()
    for i, line in enumerate(lines):
        if not line.startswith(".It Sy backstop_"):
            continue
        m = re.match(r"^\.It Sy (backstop_[a-z0-9_]+)(?: Ns Brq Va ([a-z_ ,]+))?$", line)
        assert m, f"not one metric with its labels: {line!r}"
        kind = re.match(r"^(counter|gauge|histogram):", lines[i + 1])
        labels = [l.strip() for l in (m.group(2) or "").split(",") if l.strip()]
        out[m.group(1)] = (kind.group(1) if kind else None, labels)
    return out


def source_metrics():
    """{name: type} of every family src/ declares: metrics_family(b, "NAME", "TYPE", ...) or a
    row { "NAME", "TYPE", ... } of a table of them."""
    names = {}
    for f in (ROOT / "src").glob("*.c"):
        text = f.read_text()
        for name in re.findall(r'"(backstop_[a-z0-9_]+)"', text):
            names.setdefault(name, None)
        for name, kind in re.findall(r'"(backstop_[a-z0-9_]+)",\s*"(counter|gauge|histogram)"', text):
            names[name] = kind
    assert len(names) > 40, names
    assert None not in names.values(), [n for n, k in names.items() if k is None]
    return names


def test_man8_lists_every_metric_of_the_source_and_no_other():
    documented = documented_metrics(MAN8.read_text())
    src = source_metrics()
    assert not set(src) - set(documented), \
        f"in src/ but not in backstop(8) METRICS: {sorted(set(src) - set(documented))}"
    stale = set(documented) - set(src) - TEXTFILE_METRICS
    assert not stale, f"in backstop(8) METRICS but not in src/: {sorted(stale)}"
    wrong = {n: (k, documented[n][0]) for n, k in src.items() if documented[n][0] != k}
    assert not wrong, f"type in src/ and in backstop(8) differ (src, man): {wrong}"


def test_served_metrics_have_the_documented_labels(backstop_factory, backend, tmp_path):
    """A gateway with every kind of source, SPF, DNSBL and harvest checks, after a few sessions:
    each family it serves is documented, with exactly the labels it is served with."""
    users = tmp_path / "users"
    users.write_text("a@example.test OK\n")
    dead_dns = "127.0.0.1:9"  # nothing answers: SPF gives temperror (tagged), DNSBL scores 0
    b = backstop_factory(
        gateway={"metrics_listen": "127.0.0.1:0", "spf": "on", "spf_temperror": "tag",
                 "dns_servers": dead_dns, "dnsbl_sites": "bl.example.test", "dnsbl_timeout": "200ms"},
        domains={"example.test": {"deliver": backend.addr, "verify": f"map:{users} callout:{backend.addr}"},
                 "ldap.test": {"deliver": backend.addr, "verify": "ldap:corp"}},
        extra="\n[ldap corp]\nuri = ldap://127.0.0.1:9\nbase = dc=example,dc=test\ntimeout = 1s\n")
    addr = re.search(r"ready metrics_listen=(\S+)", b.wait_log(r"ready metrics_listen=").string).group(1)
    import smtplib
    for rcpt in ("a@example.test", "other@example.test", "x@nowhere.test"):
        with smtplib.SMTP(b.host, b.port, timeout=15) as s:
            s.ehlo("client.test")
            s.mail("sender@client.test")
            s.rcpt(rcpt)
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as r:
        text = r.read().decode()
    served = dict(re.findall(r"^# TYPE (\S+) (\S+)", text, re.M))
    labels = {n: set() for n in served}
    for name, body in re.findall(r"^([a-z_]+)\{([^}]*)\}", text, re.M):
        fam = name if name in served else re.sub(r"_(bucket|sum|count)$", "", name)
        labels[fam] |= set(re.findall(r'(\w+)="', body)) - {"le"}
    documented = documented_metrics(MAN8.read_text())
    assert len(served) >= 50, sorted(served)
    for fam, kind in served.items():
        assert fam in documented, f"{fam}: served but not in backstop(8)"
        assert documented[fam][0] == kind, f"{fam}: served as a {kind}, documented as {documented[fam][0]}"
        if labels[fam]:  # a family without samples tells nothing of its labels
            assert labels[fam] == set(documented[fam][1]), \
                f"{fam}: served with labels {sorted(labels[fam])}, documented {documented[fam][1]}"
    # the checks of the engine appear by name in the page, with the stages they run at
    checks = set(re.findall(r'check="(\w+)"', text))
    assert {"spf", "dnsbl", "harvest", "relay", "verify"} <= checks, checks
    metrics_sec = section(MAN8.read_text(), "METRICS")
    for c in checks:
        assert re.search(rf"\.Cm {c}\b", metrics_sec), f"check {c} not named in METRICS"
    for stage in set(re.findall(r'stage="([\w-]+)"', text)):
        assert re.search(rf"\b{re.escape(stage)}\b", metrics_sec), f"stage {stage} not named in METRICS"


# ---------------------------------------------------------------------------------------------
# both pages render without a warning

@pytest.mark.skipif(GROFF is None, reason="groff not installed")
@pytest.mark.parametrize("page", ["backstop.8", "backstop.conf.5"])
def test_man_pages_render_without_warnings(page):
    path = MAN8 if page == "backstop.8" else MAN5
    r = subprocess.run([GROFF, "-mandoc", "-Tutf8", "-ww", "-z", str(path)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    # mdoc mistakes groff takes silently: an .It outside a list, a .Cm line of SYNOPSIS without .Nm
    text = path.read_text()
    synopsis = section(text, "SYNOPSIS") if "backstop.8" == page else ""
    for m in re.finditer(r"^\.Cm ([a-z-]+)$", synopsis, re.M):
        before = synopsis[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        assert before == ".Nm", f"SYNOPSIS: .Cm {m.group(1)} not after .Nm"
