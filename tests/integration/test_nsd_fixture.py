"""The nsd test fixture itself: it serves the zones given, reloads new data, stops answering when
paused and answers again when resumed, and leaves nothing running."""
import os
import socket

import pytest

from nsd_fixture import Nsd, nsd, reverse_ip  # noqa: F401 (nsd is a fixture)


def test_serves_zones_given_as_text(nsd):
    ns = nsd({"bl.test": ["2.0.0.127 A 127.0.0.2", '2.0.0.127 TXT "listed: see https://bl.test/"'],
              "example.test": "@ TXT \"v=spf1 -all\"\nmx MX 10 mail\nmail AAAA 2001:db8::25\n"})
    a = ns.query("2.0.0.127.bl.test", "A")
    assert a.rcode == 0 and a.aa and a.values("A") == ["127.0.0.2"]
    assert ns.query("2.0.0.127.bl.test", "TXT").values("TXT") == ["listed: see https://bl.test/"]
    assert ns.query("3.0.0.127.bl.test", "A").rcode == 3  # NXDOMAIN
    assert ns.query("example.test", "TXT", tcp=True).values("TXT") == ["v=spf1 -all"]
    assert ns.query("mail.example.test", "AAAA").values("AAAA") == ["2001:db8::25"]


def test_reload_pause_resume_stop(tmp_path):
    ns = Nsd(tmp_path, {"bl.test": ["2.0.0.127 A 127.0.0.2"]})
    try:
        ns.reload({"bl.test": ["2.0.0.127 A 127.0.0.4"]})
        assert ns.query("2.0.0.127.bl.test").values("A") == ["127.0.0.4"]
        ns.pause()
        with pytest.raises(socket.timeout):
            ns.query("2.0.0.127.bl.test", timeout=0.3)
        ns.resume()
        assert ns.query("2.0.0.127.bl.test").values("A") == ["127.0.0.4"]
        pgid = ns.proc.pid
    finally:
        ns.stop()
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)


def test_reverse_ip():
    assert reverse_ip("127.0.1.2") == "2.1.0.127"
    assert reverse_ip("2001:db8::1") == ".".join("1000000000000000000000008bd01002")
