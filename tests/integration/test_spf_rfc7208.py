"""The RFC 7208 test suite (tests/spf/rfc7208-tests.yml, converted to rfc7208-cases.txt) over real
DNS: every case's zone data served by a private nsd on loopback (spf_suite_dns.py: one zone per
top-level domain, reloaded for each of the suite's sections; the suite's TIMEOUT names dropped by
a UDP relay in front of nsd, which also answers NXDOMAIN as the root would for other top-level
domains), and `backstop spf` asking it through dns_servers. A case passes
when the first line of the output is one of the results the suite lists and, where the suite
gives an explanation, the explanation line says it (the suite's DEFAULT: backstop's default
explanation)."""
import pytest

from conftest import HOSTNAME, run_cli
from nsd_fixture import Nsd
from spf_suite_dns import TimeoutRelay, load_suite, section_zones, timeout_rules, tlds

SECTIONS = load_suite()
ZONE_NAMES = tlds(SECTIONS)


@pytest.fixture(scope="module")
def dns(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rfc7208")
    ns = Nsd(tmp / "nsd", section_zones(SECTIONS[0], ZONE_NAMES))
    relay = TimeoutRelay(ns.server, ZONE_NAMES)
    conf = tmp / "spf.conf"
    conf.write_text(f"[gateway]\nhostname = {HOSTNAME}\ndns_servers = {relay.addr}\n"
                    "[domain example.test]\ndeliver = 127.0.0.1:25\n")
    try:
        yield ns, relay, conf
    finally:
        relay.close()
        ns.stop()


def run_case(conf, case):
    sender = case["mailfrom"] or "<>"
    args = ["spf", "-c", conf, case["host"], sender]
    if case["helo"]:
        args.append(case["helo"])
    return run_cli(*args, timeout=60)


def explanation_line(out):
    for line in out.splitlines():
        if line.startswith("explanation: "):
            return line[len("explanation: "):]
    return None


@pytest.mark.parametrize("section", SECTIONS, ids=[f"{s.number}-{s.description}" for s in SECTIONS])
def test_rfc7208_section_over_nsd(dns, section):
    ns, relay, conf = dns
    ns.reload(section_zones(section, ZONE_NAMES))
    relay.set_rules(timeout_rules(section))
    failures = []
    for case in section.cases:
        r = run_case(conf, case)
        lines = r.stdout.splitlines()
        got = lines[0] if lines else ""
        if r.returncode != 0 or got not in case["result"]:
            failures.append(f"{case['name']}: got {got!r} (exit {r.returncode}), want {case['result']}\n"
                            f"{r.stdout}{r.stderr}")
            continue
        want = case.get("explanation")
        if want is not None and got == "fail":
            exp = explanation_line(r.stdout)
            ok = exp is not None and (exp == want or (want == "DEFAULT" and "does not designate" in exp))
            if not ok:
                failures.append(f"{case['name']}: explanation {exp!r}, want {want!r}")
    assert not failures, f"{len(failures)} of {len(section.cases)} cases failed:\n" + "\n".join(failures)
