"""Recipient verification with verify = map:PATH in a running gateway: a relay_recipients file
with odd lines (comments, blank lines, CRLF, tabs, upper case, continuation lines), and the file
replaced while sessions run: the answers switch, nothing else happens (no 4xx, no errors).
"""
import os
import signal
import threading
import time

import pytest

from callout_fixtures import FakeValidator, SmtpSink

ODD = (
    "# relay recipients, as an admin's tools leave them\r\n"
    "\r\n"
    "Alice@Example.Test OK\r\n"
    "bob@example.test\tOK\n"
    "   mallory@example.test OK\n"          # a continuation line: not an entry
    "carol@example.test    OK   \n"
    "#dave@example.test OK\n"
    "erin@example.test OK"                  # no newline at the end
)


@pytest.fixture
def sink():
    s = SmtpSink()
    yield s
    s.stop()


def start(backstop_factory, sink, path):
    # many unknown recipients from 127.0.0.1: no harvest budget here (test_harvest.py has them)
    return backstop_factory(
        gateway={"positive_ttl": "1s", "negative_ttl": "1s", "log_level": "info", "harvest_limit": "0",
                 "harvest_network_limit": "0"},
        domains={"example.test": {"deliver": sink.addr, "verify": f"map:{path}"}})


def rcpt_codes(b, addrs):
    with b.connect(timeout=10) as c:
        c.ehlo()
        assert c.cmd("MAIL FROM:<s@client.test>").code == 250
        return [c.cmd(f"RCPT TO:<{a}>").code for a in addrs]


def test_map_with_odd_lines(backstop_factory, sink, tmp_path):
    path = tmp_path / "relay_recipients"
    path.write_text(ODD, newline="")
    b = start(backstop_factory, sink, path)
    addrs = ["alice@example.test", "ALICE@example.test", "bob@example.test", "carol@example.test",
             "erin@example.test", "mallory@example.test", "dave@example.test", "nobody@example.test"]
    assert rcpt_codes(b, addrs) == [250, 250, 250, 250, 250, 550, 550, 550]


def test_map_replaced_under_load(backstop_factory, sink, tmp_path):
    path = tmp_path / "relay_recipients"
    path.write_text("stay@example.test OK\nswitch@example.test OK\n")
    b = start(backstop_factory, sink, path)
    b.wait_log(r"map .*loaded 2 entries")
    seen, errors = [], []
    stop = threading.Event()

    def load():
        while not stop.is_set():
            try:
                t0 = time.monotonic()
                codes = rcpt_codes(b, ["stay@example.test", "switch@example.test", "new@example.test"])
                seen.append((t0, time.monotonic(), codes))
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))
                return
    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    while len(seen) < 100 and not errors:
        time.sleep(0.01)  # let the load build up before the switch
    mark = b.mark()
    tmp = tmp_path / "relay_recipients.new"
    tmp.write_text("# v2\nstay@example.test OK\nnew@example.test OK\nextra@example.test OK\n")
    renamed = time.monotonic()
    os.rename(tmp, path)
    b.wait_log(r"map .*loaded 3 entries", start=mark)
    switched = time.monotonic()
    settle = switched + 1.5  # a cached answer lives 1 s (the shortest TTL) and may be served once more
    while sum(1 for start, _, _ in list(seen) if start > settle) < 50 and not errors:
        time.sleep(0.01)
    stop.set()
    for t in threads:
        t.join(20)
    assert not errors, errors[:3]
    assert all(c[0] == 250 for _, _, c in seen), "stay@ must be valid throughout"
    assert {x for _, _, c in seen for x in c} <= {250, 550}, "only the map's answers, never a 4xx"
    before = [c for _, end, c in seen if end < renamed]
    assert before and all(c == [250, 250, 550] for c in before), before[:5]
    after = [c for start, _, c in seen if start > settle]
    assert after and all(c == [250, 550, 250] for c in after), after[:5]
    assert "error" not in "\n".join(l for l in b.log if "map" in l).lower()


# ---- issue 9 item 8: a recipient added to a map is accepted at once ----

def test_address_added_to_map_accepted_at_once(backstop_factory, sink, tmp_path):
    """A new employee refused once, then added to the map and SIGHUP: the next RCPT is 250 although
    negative_ttl is an hour (map verdicts are never cached)."""
    path = tmp_path / "relay_recipients"
    path.write_text("alice@example.test OK\n")
    b = backstop_factory(
        gateway={"negative_ttl": "1h", "positive_ttl": "1h", "log_level": "info"},
        domains={"example.test": {"deliver": sink.addr, "verify": f"map:{path}"}})
    assert rcpt_codes(b, ["newbie@example.test", "alice@example.test"]) == [550, 250]
    tmp = tmp_path / "relay_recipients.new"
    tmp.write_text("alice@example.test OK\nnewbie@example.test OK\n")
    mark = b.mark()
    os.rename(tmp, path)
    b.send_signal(signal.SIGHUP)
    b.wait_log(r"configuration reloaded", start=mark)
    b.wait_log(r"map .*loaded 2 entries", start=mark)
    assert rcpt_codes(b, ["newbie@example.test", "alice@example.test", "other@example.test"]) == [250, 250, 550]


def test_map_before_cached_negative_of_later_source(backstop_factory, sink, tmp_path):
    """verify = map callout: while the map could not be read, the callout refused newbie@ and its
    550 went to the cache for an hour. Once the map exists and holds newbie@, the map (asked before
    the cache) accepts it at once; an address the map does not hold is refused by the map."""
    fv = FakeValidator(known=["alice@example.test"])
    try:
        path = tmp_path / "relay_recipients"
        b = backstop_factory(
            gateway={"negative_ttl": "1h", "positive_ttl": "1h", "log_level": "info"},
            domains={"example.test": {"deliver": sink.addr, "verify": f"map:{path} callout:{fv.addr}"}})
        assert rcpt_codes(b, ["newbie@example.test"]) == [550]
        assert fv.rcpts["newbie@example.test"] == 1
        mark = b.mark()
        tmp = tmp_path / "relay_recipients.new"
        tmp.write_text("alice@example.test OK\nnewbie@example.test OK\n")
        os.rename(tmp, path)
        b.wait_log(r"map .*loaded 2 entries", start=mark)
        assert rcpt_codes(b, ["newbie@example.test", "ghost@example.test"]) == [250, 550]
        assert fv.rcpts["newbie@example.test"] == 1 and fv.rcpts["ghost@example.test"] == 0
    finally:
        fv.close()


# ---- issue 9 item 12: ""@domain is not a catch-all ----

def test_empty_quoted_local_part_is_not_a_catch_all(backstop_factory, sink, tmp_path):
    """A map with ""@example.test is refused with FILE:LINE (the last good version, or none, is
    served): a random address gets 451 (unavailable), never 250."""
    path = tmp_path / "relay_recipients"
    path.write_text('alice@example.test OK\n""@example.test OK\n')
    b = start(backstop_factory, sink, path)
    b.wait_log(rf"{path}:2: empty local part")
    assert rcpt_codes(b, ["random@example.test", "alice@example.test"]) == [451, 451]
