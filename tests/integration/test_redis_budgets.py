"""Harvest budgets shared in Redis (cache = redis://): two gateways and a redis-server started by
the test on loopback ports. A harvester whose unknown recipients are split over both gateways trips
the one budget they share; with Redis killed each gateway counts alone and valid mail is never
refused because of it; when Redis returns the budgets are shared again without a restart; behind
HAProxy (send-proxy, send-proxy-v2) the budget is the real client's, not the balancer's.

Client sockets are bound to addresses of 127.0.0.0/8 (as in test_harvest.py)."""
import signal
import threading
import time

import pytest

from callout_fixtures import fake  # noqa: F401  (fixture)
from peers import made_by
from redis_fixture import redis  # noqa: F401  (fixture)
from test_harvest import KNOWN, conn_from, mail, unknowns
from test_proxy_protocol import HAProxy, connect_from


def two_gateways(backstop_factory, backend, fv, redis, **over):
    g = {"cache": f"redis://127.0.0.1:{redis.port}/2", "cache_redis_prefix": "mx",
         "harvest_tarpit": "100ms", "harvest_penalty": "1h", "harvest_network_limit": "0",
         "max_errors": 1000, "error_delay": "0s", "callout_max_rate": 0, "log_level": "info"}
    g.update(over)
    d = {"example.test": {"deliver": backend.addr, "verify": f"callout:{fv.addr}", "on_unavailable": "defer"}}
    return (backstop_factory(gateway=g, domains=d, name="a.conf"),
            backstop_factory(gateway=g, domains=d, name="b.conf"))


def rcpt_unknown(c, addr):
    r = c.cmd(f"RCPT TO:<{addr}>")
    return (r.code, r.enhanced)


def banner(b, source):
    with conn_from(b, source) as c:
        return c.banner


def valid(b, source):
    with conn_from(b, source) as c:
        assert c.banner.code == 220, c.banner
        mail(c)
        return c.cmd(f"RCPT TO:<{KNOWN}>")


def split_harvest(a, b, source, tag):
    """Sessions on a and b from source: 3 unknown recipients on each (the sixth trips a shared
    6/1h budget), then one more on each: 450 4.7.1 on both."""
    mark = b.mark()
    with conn_from(a, source) as ca, conn_from(b, source) as cb:
        for c in (ca, cb):
            assert c.banner.code == 220, c.banner
            mail(c)
        for c, g in ((ca, "a"), (cb, "b")):
            for i in range(3):
                assert rcpt_unknown(c, f"nobody-{tag}{g}-{i}@example.test") == (550, "5.1.1")
        b.wait_log(rf"harvest: client={source} budget=a:{source} reached: 6 unknown recipients", start=mark)
        for c in (ca, cb):
            assert rcpt_unknown(c, f"more-{tag}@example.test") == (450, "4.7.1")


def test_harvester_split_over_two_gateways_trips_the_shared_budget(backstop_factory, backend, fake, redis):
    fv = fake(known=[KNOWN])
    a, b = two_gateways(backstop_factory, backend, fv, redis, harvest_limit="6/1h")
    split_harvest(a, b, "127.0.1.10", "s")  # over budget on both gateways
    # and the penalty: 421 at the banner on a new connection to a, whose own count is 4
    ban = banner(a, "127.0.1.10")
    assert (ban.code, ban.enhanced) == (421, "4.7.0"), ban
    # in Redis, namespaced, compact, expiring by itself (penalty 1h > window)
    val = redis.cli("-n", 2, "GET", "backstop:mx:b:a:127.0.1.10")
    width, pen, slots = val.split(":", 2)
    assert width == str(3600_000 // 16) and int(pen) > 0 and sum(int(s.split("=")[1]) for s in slots.split(",")) >= 6, val
    ttl = int(redis.cli("-n", 2, "PTTL", "backstop:mx:b:a:127.0.1.10"))
    assert 3_500_000 < ttl <= 3_600_000 + 3600_000 // 16, ttl
    # another client is not affected, on either gateway
    assert valid(a, "127.0.1.11").code == 250
    assert valid(b, "127.0.2.20").code == 250
    # without Redis neither would have tripped: a's own count stayed under the limit
    assert not [l for l in a.log if "budget=a:127.0.1.10 reached" in l]


def test_redis_killed_budgets_local_then_shared_again(backstop_factory, backend, fake, redis):
    fv = fake(known=[KNOWN])
    a, b = two_gateways(backstop_factory, backend, fv, redis, harvest_limit="6/1h", cache_redis_timeout="200ms",
                        callout_max_rate=50)  # shared too: probes go on while Redis is away
    assert valid(a, "127.0.3.1").code == 250
    redis.kill()
    # Redis gone: each gateway counts alone; valid mail is answered, never refused because of Redis
    mark_a, mark_b = a.mark(), b.mark()
    for g in (a, b):
        for i in range(3):
            assert valid(g, f"127.0.3.{i + 2}").code == 250
    a.wait_log(r"budgets redis://.*: Redis lost: harvest budgets and callout_max_rate counted by this gateway "
               r"alone", start=mark_a)
    unknowns(a, "127.0.1.20", 3, "da")
    unknowns(b, "127.0.1.20", 3, "db")  # 3 + 3, but nobody sees 6
    assert valid(a, "127.0.1.20").code == 250
    unknowns(a, "127.0.1.20", 3, "dc")  # a alone reaches 6: its local budget trips
    a.wait_log(r"harvest: client=127\.0\.1\.20 budget=a:127\.0\.1\.20 reached: 6 unknown", start=mark_a)
    assert banner(a, "127.0.1.20").code == 421
    assert banner(b, "127.0.1.20").code == 220  # b counted 3
    assert len([l for l in a.log if "Redis lost" in l]) == 1  # logged once
    assert not [l for l in b.log[mark_b:] if "127.0.1.20 reached" in l]
    # Redis back on the same port: shared again without a restart
    redis.start()
    for g in (a, b):
        m = g.mark()
        for i in range(200):  # each call may reconnect (the backoff is at most 5 s)
            if [l for l in g.log[m:] if "Redis found again" in l]:
                break
            banner(g, "127.0.3.9")
            time.sleep(0.05)  # polling the gateways until they reconnect
        g.wait_log(r"budgets redis://.*: Redis found again: harvest budgets shared again", start=m)
    split_harvest(a, b, "127.0.1.30", "r")
    assert banner(a, "127.0.1.30").code == 421
    assert redis.cli("-n", 2, "EXISTS", "backstop:mx:b:a:127.0.1.30") == "1"


def test_redis_that_does_not_answer_is_bounded(backstop_factory, backend, fake, redis):
    fv = fake(known=[KNOWN])
    a, b = two_gateways(backstop_factory, backend, fv, redis, harvest_limit="3/1h", cache_redis_timeout="200ms",
                        callout_max_rate=50)
    assert valid(a, "127.0.5.1").code == 250  # connected
    redis.proc.send_signal(signal.SIGSTOP)  # the connections stay open, nothing answers
    try:
        t0 = time.monotonic()
        assert valid(a, "127.0.5.2").code == 250
        unknowns(a, "127.0.1.40", 3, "slow")  # counted locally: the third trips a's own budget
        a.wait_log(r"harvest: client=127\.0\.1\.40 budget=a:127\.0\.1\.40 reached: 3 unknown")
        assert banner(a, "127.0.1.40").code == 421
        # each RCPT waited at most a few times cache_redis_timeout, never for Redis itself
        assert time.monotonic() - t0 < 8, time.monotonic() - t0
    finally:
        redis.proc.send_signal(signal.SIGCONT)


@pytest.mark.parametrize("mode", ["send-proxy", "send-proxy-v2"])
def test_haproxy_budget_is_the_real_client(backstop_factory, backend, fake, redis, tmp_path, mode):
    fv = fake(known=[KNOWN])
    a, b = two_gateways(backstop_factory, backend, fv, redis, harvest_limit="4/1h",
                        proxy_protocol_from="127.0.0.1/32", proxy_protocol_timeout="2s")
    with made_by(lambda p: HAProxy(tmp_path / p.conf.stem, p.port, modes=(mode,)),
                 stop=lambda h: h.stop()) as make:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        ha, hb = make(p=a), make(p=b)

        def code(s):
            data = b""
            while True:
                chunk = s.recv(4096)
                assert chunk, data
                data += chunk
                lines = data.decode().split("\r\n")
                if len(lines) >= 2 and lines[-1] == "" and lines[-2][3:4] == " ":
                    return lines[-2][:3]

        def session_via(hp, src, rcpts):
            """Banner, EHLO, MAIL and RCPT codes of a session from src through HAProxy hp."""
            with connect_from(src, hp.ports[mode]) as s:
                codes = [code(s)]
                if codes[0] != "220":
                    return codes
                for line in ["EHLO client.test", "MAIL FROM:<a@client.test>"] + [f"RCPT TO:<{r}>" for r in rcpts]:
                    s.sendall(line.encode() + b"\r\n")
                    codes.append(code(s))
                return codes
        mark = b.mark()
        two = ["220", "250", "250", "550", "550"]
        assert session_via(ha, "127.0.0.2", ["nobody-pa-1@example.test", "nobody-pa-2@example.test"]) == two
        assert session_via(hb, "127.0.0.2", ["nobody-pb-1@example.test", "nobody-pb-2@example.test"]) == two
        b.wait_log(r"harvest: client=127\.0\.0\.2 budget=a:127\.0\.0\.2 reached: 4 unknown", start=mark)
        assert session_via(ha, "127.0.0.2", []) == ["421"]  # the penalty, for the real client
        assert session_via(hb, "127.0.0.2", []) == ["421"]
        # another client behind the same balancer is not affected
        assert session_via(ha, "127.0.0.3", [KNOWN]) == ["220", "250", "250", "250"]
        assert redis.cli("-n", 2, "EXISTS", "backstop:mx:b:a:127.0.0.2") == "1"
        assert redis.cli("-n", 2, "EXISTS", "backstop:mx:b:a:127.0.0.1") == "0"  # never the balancer's
        for g in (a, b):
            assert not [l for l in g.log if "budget=a:127.0.0.1 " in l]


def test_callout_max_rate_shared_by_two_gateways(backstop_factory, backend, fake, redis):
    fv = fake(known=[KNOWN])
    lock = threading.Lock()
    times = fv.record_times("f", time.time)  # the flood's addresses (not the domain's catch-all check)
    rate, duration = 10, 3.0
    a, b = two_gateways(backstop_factory, backend, fv, redis, harvest_limit="0", max_errors=100000,
                        callout_max_rate=rate, callout_max_connections=4)
    codes = []
    t0 = time.monotonic()

    def flood(g, k):
        with conn_from(g, f"127.0.4.{k + 1}", timeout=20) as c:
            mail(c)
            burst = 0
            while time.monotonic() - t0 < duration:
                c.send("".join(f"RCPT TO:<f{k}-{burst}-{i}@example.test>\r\n" for i in range(20)))
                got = [c.reply() for _ in range(20)]
                burst += 1
                with lock:
                    codes.extend((r.code, r.enhanced) for r in got)
    threads = [threading.Thread(target=flood, args=(g, k)) for k, g in enumerate((a, b, a, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    elapsed = time.monotonic() - t0
    refused = sum(1 for c in codes if c[0] == 451)
    answered = sum(1 for c in codes if c[0] == 550)
    assert refused + answered == len(codes), set(codes)
    ts = sorted(times)
    assert len(ts) == answered
    # both gateways together: the rate per second, not twice it (two gateways counting alone
    # let 60 through in this test), and probes all along
    assert rate * (duration - 1) <= len(ts) <= rate * (int(elapsed) + 2), (len(ts), elapsed)
    per_second = {}
    for t in ts:
        per_second[int(t)] = per_second.get(int(t), 0) + 1
    # a probe granted at the end of a second may reach the server just after it: 1 of slack
    assert max(per_second.values()) <= rate + 1, per_second
    # the gateways' shared counter refused probes that each gateway's own limiter would have let go
    assert [l for l in a.log + b.log if "reached by the gateways" in l]
